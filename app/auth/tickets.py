"""Stream tickets: short-lived, single-use credentials for the URLs of live streams.

A browser cannot set an Authorization header on a WebSocket or an EventSource, and a URL ends up
in access logs, proxies and browser history. So a client trades its bearer token for a ticket
(`POST /v1/tickets`) and puts the ticket, not the token, in the stream's URL: it is good for one
connection within `ttl_s` (30 s by default), and worthless once used or expired. A ticket is
`gft1.<claims>.<mac>`: the caller's role, subject and scope, its expiry and a random nonce, signed
with a key derived from gridflow's signing secret. Pure functions; the HTTP layer records used
nonces (app/http/deps.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from app.auth.scopes import InvalidScope, parse_scope
from app.auth.tokens import Principal, Role
from app.platform.errors import Unauthorized

PREFIX = "gft1"
DOMAIN = b"gridflow stream tickets v1"


@dataclass(frozen=True)
class Ticket:
    principal: Principal
    nonce: str  # 32 hex digits, recorded when the ticket is used
    expires: int  # Unix time


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), DOMAIN, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_ticket(secret: str, principal: Principal, *, now: datetime, ttl_s: int) -> str:
    claims = {
        "r": principal.role.value,
        "s": principal.subject,
        "e": int(now.timestamp()) + ttl_s,
        "n": secrets.token_hex(16),
    }
    if principal.scope is not None:
        claims["c"] = str(principal.scope)  # a scoped operator's stream stays in its scope
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(_key(secret), f"{PREFIX}.{body}".encode(), hashlib.sha256).digest()
    return f"{PREFIX}.{body}.{_b64(mac)}"


def read_ticket(secret: str, ticket: str, *, now: datetime) -> Ticket:
    """The ticket's caller, or Unauthorized: malformed, forged or expired. Whether it was used
    before is for the caller to check (by its nonce)."""
    parts = ticket.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or len(ticket) > 1000:
        raise Unauthorized("invalid ticket")
    expected = hmac.new(_key(secret), f"{PREFIX}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        mac = _unb64(parts[2])
        claims = json.loads(_unb64(parts[1]))
    except ValueError as exc:
        raise Unauthorized("invalid ticket") from exc
    if not hmac.compare_digest(mac, expected) or not isinstance(claims, dict):
        raise Unauthorized("invalid ticket")
    try:
        scope = parse_scope(claims["c"]) if "c" in claims else None
        principal = Principal(Role(claims["r"]), str(claims["s"]), scope)
        expires, nonce = int(claims["e"]), str(claims["n"])
    except (KeyError, ValueError, TypeError, InvalidScope) as exc:
        raise Unauthorized("invalid ticket") from exc
    if expires <= now.timestamp():
        raise Unauthorized("ticket expired: ask for a new one")
    return Ticket(principal, nonce, expires)
