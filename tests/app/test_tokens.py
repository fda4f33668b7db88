"""A verified token is remembered until it expires, never beyond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.auth.tokens import Principal, Role, TokenVerifier, issue_token
from app.platform.errors import Unauthorized

SECRET = "s" * 40


def token(now: datetime, ttl_s: int) -> str:
    return issue_token(
        SECRET,
        role=Role.WORKER,
        subject="w-1",
        issuer="gridflow",
        audience="gridflow",
        now=now,
        ttl_s=ttl_s,
    )


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    verifier = TokenVerifier(SECRET, issuer="gridflow", audience="gridflow")
    live = token(datetime.now(UTC), 3600)
    assert verifier.remembered(live) is None
    assert verifier.verify(live) == Principal(Role.WORKER, "w-1")
    assert verifier.remembered(live) == Principal(Role.WORKER, "w-1")
    # Issued long ago and expired a second ago: it was valid when first seen, not now.
    stale = token(datetime.now(UTC) - timedelta(seconds=3601), 3600)
    verifier._verified[stale] = (Principal(Role.WORKER, "w-1"), datetime.now(UTC).timestamp() - 1)
    assert verifier.remembered(stale) is None
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(stale)


def test_a_refused_token_is_not_remembered() -> None:
    verifier = TokenVerifier(SECRET, issuer="gridflow", audience="gridflow")
    forged = issue_token(
        "x" * 40,
        role=Role.ADMIN,
        subject="mallory",
        issuer="gridflow",
        audience="gridflow",
        now=datetime.now(UTC),
        ttl_s=60,
    )
    with pytest.raises(Unauthorized):
        verifier.verify(forged)
    assert verifier.remembered(forged) is None
    assert not verifier.may_fetch(forged)  # no identity provider: nothing to fetch
