"""Bearer tokens. Pure functions; the HTTP layer decides who may do what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import jwt

from app.core.errors import Unauthorized


class Role(StrEnum):
    RESIDENT = "resident"
    WORKER = "worker"
    OPERATOR = "operator"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.subject}"


def issue_token(
    secret: str, *, role: Role, subject: str, issuer: str, audience: str, now: datetime, ttl_s: int
) -> str:
    claims = {
        "sub": subject,
        "role": role.value,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str, *, issuer: str, audience: str) -> Principal:
    """Check signature, issuer, audience and expiry; raise Unauthorized with the reason."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    try:
        role = Role(str(claims.get("role")))
    except ValueError as exc:
        raise Unauthorized("token has no valid role") from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 128:
        raise Unauthorized("token subject is invalid")
    return Principal(role, subject)
