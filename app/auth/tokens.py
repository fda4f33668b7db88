"""Bearer tokens. Pure functions; the HTTP layer decides who may do what."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from app.auth.scopes import CITY, SCOPE_CLAIM, InvalidScope, Scope, parse_scope
from app.platform.errors import ServiceUnavailable, Unauthorized


class Role(StrEnum):
    RESIDENT = "resident"
    WORKER = "worker"
    OPERATOR = "operator"
    ADMIN = "admin"


STAFF = (Role.OPERATOR, Role.ADMIN)  # the roles a scope limits


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str
    scope: Scope | None = None  # operators and admins only; None: the whole city

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.subject}"


def issue_token(
    secret: str,
    *,
    role: Role,
    subject: str,
    issuer: str,
    audience: str,
    now: datetime,
    ttl_s: int,
    auth_time: int | None = None,
    scope: Scope | None = None,
) -> str:
    """A token signed with gridflow's own secret. `auth_time` is when its holder first got
    one (a renewed token keeps it; sessions end `session_max_s` after it). `scope` limits an
    operator or admin to part of the city (app/auth/scopes.py); ValueError for another role."""
    if scope is not None and role not in STAFF:
        raise ValueError(f"only operator and admin tokens carry a scope, not {role.value} tokens")
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role.value,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
        "auth_time": int(now.timestamp()) if auth_time is None else auth_time,
    }
    if scope is not None:
        claims[SCOPE_CLAIM] = str(scope)
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Bearer tokens: HS256 signed with gridflow's own secret (`gridflow token issue`), and
    RS256 / ES256 from the city's identity provider, checked against its JWKS (fetched from
    `jwks_url`, cached, fetched again for an unknown key id). Signature, issuer, audience,
    expiry, subject and role are checked for both; no other algorithm is accepted, so a token
    cannot pick its own verification (`none`, or HS256 keyed with a public key).

    A scope (app/auth/scopes.py) is read from `gridflow_scope` in gridflow's own tokens and
    from `scope_claim` in the provider's: absent (or null) is the whole city, anything that is
    not a scope refuses the token, and a scope on a resident's or worker's token is checked,
    then ignored (their reach is their own reports and tasks). Gridflow's own claim is fixed on
    purpose: renaming a setting must never turn a scoped token into a city-wide one.

    A verified token is remembered until it expires (`remembered`), so a phone sending many
    requests with one token pays for the signature check once; only the JWKS path can wait
    on the network (`may_fetch`)."""

    REMEMBER = 10_000  # tokens kept; the memory is forgotten whole when full

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        jwks_issuer: str | None = None,
        jwks_audience: str | None = None,
        role_claim: str = "role",
        scope_claim: str = SCOPE_CLAIM,
        scope_required: bool = False,
    ) -> None:
        self.secret = secret
        self.issuer, self.audience = issuer, audience
        self.jwks_issuer = jwks_issuer or issuer
        self.jwks_audience = jwks_audience or audience
        self.role_claim = role_claim
        self.scope_claim = scope_claim
        self.scope_required = scope_required
        self.jwks = (
            jwt.PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=300, timeout=5)
            if jwks_url
            else None
        )
        self._verified: dict[str, tuple[Principal, float]] = {}  # token → (caller, its exp)

    def remembered(self, token: str) -> Principal | None:
        """The caller of a token verified before and not yet expired."""
        known = self._verified.get(token)
        if known is None:
            return None
        if time.time() >= known[1]:
            self._verified.pop(token, None)
            return None
        return known[0]

    def may_fetch(self, token: str) -> bool:
        """Whether verifying `token` may fetch the identity provider's keys."""
        if self.jwks is None:
            return False
        try:
            return jwt.get_unverified_header(token).get("alg") != "HS256"
        except jwt.PyJWTError:
            return False

    def session_of(self, token: str) -> tuple[Principal, int]:
        """The caller of one of gridflow's own tokens and when its session began (its
        `auth_time`, or its `iat`), for renewing it; Unauthorized for any other token."""
        try:
            if jwt.get_unverified_header(token).get("alg") != "HS256":
                raise Unauthorized(
                    "only gridflow's own tokens are renewed here; renew a token "
                    "of the identity provider there"
                )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        principal = self.verify(token)
        claims = jwt.decode(
            token, self.secret, algorithms=["HS256"], issuer=self.issuer, audience=self.audience
        )
        return principal, int(claims.get("auth_time", claims.get("iat", 0)))

    def verify(self, token: str) -> Principal:
        """The caller, or Unauthorized with the reason (ServiceUnavailable if the identity
        provider's keys cannot be fetched). May fetch the JWKS: call it off the event loop."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        key: Any
        if alg == "HS256":
            key, issuer, audience = self.secret, self.issuer, self.audience
        elif alg in ("RS256", "ES256"):
            if self.jwks is None:
                raise Unauthorized(f"{alg} tokens are not accepted here (no JWKS configured)")
            try:
                jwk = self.jwks.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientConnectionError as exc:
                raise ServiceUnavailable("the identity provider's keys are unavailable") from exc
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"no key for this token: {exc}") from exc
            if jwk.algorithm_name != alg:  # e.g. an ES256 token naming an RSA key
                raise Unauthorized(f"key {jwk.key_id!r} is not an {alg} key")
            key = jwk.key
            issuer, audience = self.jwks_issuer, self.jwks_audience
        else:
            raise Unauthorized(f"tokens signed with {alg!r} are not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=issuer,
                audience=audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:  # a key unfit for the algorithm
            raise Unauthorized(f"invalid token: {exc}") from exc
        try:
            role = Role(str(claims.get(self.role_claim)))
        except ValueError as exc:
            raise Unauthorized("token has no valid role") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise Unauthorized("token subject is invalid")
        principal = Principal(role, subject, self._scope(claims, own=alg == "HS256", role=role))
        if len(self._verified) >= self.REMEMBER:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    def _scope(self, claims: dict[str, Any], *, own: bool, role: Role) -> Scope | None:
        raw = claims.get(SCOPE_CLAIM if own else self.scope_claim)
        if raw == CITY:
            return None
        if raw is None:
            if not own and self.scope_required and role in STAFF:
                # a provider that forgot the claim (or a renamed claim) must not make a street
                # operator city-wide: with scope_required, city-wide says so itself
                raise Unauthorized(
                    f"token has no {self.scope_claim} claim; a city-wide operator's says {CITY!r}"
                )
            return None
        try:
            scope = parse_scope(raw)
        except InvalidScope as exc:
            raise Unauthorized(f"token scope is invalid: {exc}") from exc
        return scope if role in STAFF else None
