"""Tokens from a city's identity provider: RS256 and ES256 checked against its JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.conftest import Configured
from tests.harness import Harness

ISSUER, AUDIENCE = "https://id.city.example", "gridflow-city"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> dict[str, Any]:
    keys = []
    for kid, alg, algorithm, key in (
        ("rsa-1", "RS256", RSAAlgorithm, RSA_KEY),
        ("ec-1", "ES256", ECAlgorithm, EC_KEY),
    ):
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        keys.append(jwk | {"kid": kid, "alg": alg, "use": "sig"})
    return {"keys": keys}


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps(jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            """No request log on the test's output."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()


@pytest.fixture
async def city(configured: Configured, jwks_url: str) -> AsyncIterator[Harness]:
    auth = {"jwks_url": jwks_url, "jwks_issuer": ISSUER, "jwks_audience": AUDIENCE}
    async with configured(auth=auth) as h:
        yield h


def token(key: Any, alg: str, kid: str, **claims: Any) -> str:
    now = datetime.now(UTC)
    body = {
        "sub": "op-17",
        "role": "operator",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    } | claims
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


async def status(h: Harness, bearer: str) -> int:
    r = await h.client.get("/v1/cases", headers={"Authorization": f"Bearer {bearer}"})
    return r.status_code


async def test_provider_tokens_are_accepted(city: Harness) -> None:
    assert await status(city, token(RSA_KEY, "RS256", "rsa-1")) == 200
    assert await status(city, token(EC_KEY, "ES256", "ec-1")) == 200
    # gridflow's own HS256 tokens still work beside them.
    assert await status(city, city.token("operator", "local-op")) == 200


@pytest.mark.parametrize(
    "make",
    [
        lambda: token(RSA_KEY, "RS256", "rsa-1", iss="https://elsewhere.example"),
        lambda: token(RSA_KEY, "RS256", "rsa-1", aud="another-app"),
        lambda: token(RSA_KEY, "RS256", "rsa-1", exp=int(datetime.now(UTC).timestamp()) - 60),
        lambda: token(RSA_KEY, "RS256", "rsa-1", role="mayor"),
        lambda: token(STRANGER, "RS256", "rsa-1"),  # the right kid, the wrong key
        lambda: token(STRANGER, "RS256", "rsa-9"),  # a kid the provider never published
        lambda: token(EC_KEY, "ES256", "rsa-1"),  # an EC signature under the RSA kid
        lambda: jwt.encode(
            {"sub": "x", "role": "admin", "iss": ISSUER, "aud": AUDIENCE, "exp": 4102444800},
            None,
            algorithm="none",
        ),
    ],
    ids=["issuer", "audience", "expired", "role", "wrong-key", "unknown-kid", "ec-as-rsa", "none"],
)
async def test_bad_provider_tokens_are_refused(city: Harness, make: Any) -> None:
    assert await status(city, make()) == 401


async def test_a_public_key_cannot_be_used_as_an_hmac_secret(city: Harness) -> None:
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"sub": "x", "role": "admin", "iss": ISSUER, "aud": AUDIENCE, "exp": 4102444800}
    assert await status(city, _hmac_with(pem, claims)) == 401


def _hmac_with(secret: bytes, claims: dict[str, Any]) -> str:
    """HS256 by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def test_without_a_jwks_provider_tokens_are_refused(h: Harness) -> None:
    assert await status(h, token(RSA_KEY, "RS256", "rsa-1")) == 401


async def test_provider_scopes_limit_and_malformed_ones_are_refused(
    configured: Configured, jwks_url: str
) -> None:
    auth = {
        "jwks_url": jwks_url,
        "jwks_issuer": ISSUER,
        "jwks_audience": AUDIENCE,
        "scope_claim": "area",
    }
    async with configured(auth=auth) as city:

        async def policies(bearer: str) -> tuple[int, str]:
            r = await city.client.get(
                "/v1/admin/policies", headers={"Authorization": f"Bearer {bearer}"}
            )
            return r.status_code, r.json().get("detail", "")

        admin = {"role": "admin"}
        assert (await policies(token(RSA_KEY, "RS256", "rsa-1", **admin)))[0] == 200
        # OAuth's own `scope` claim lists other things: it is not gridflow's
        oauth = token(RSA_KEY, "RS256", "rsa-1", scope="openid profile", **admin)
        assert (await policies(oauth))[0] == 200
        scoped = token(EC_KEY, "ES256", "ec-1", area="district:330106", **admin)
        status_code, detail = await policies(scoped)
        assert status_code == 403 and "whole city" in detail
        assert await status(city, scoped) == 200  # its own district's cases
        for bad in ("district:3301", "county:330106", ["street:330106001"]):
            status_code, detail = await policies(
                token(RSA_KEY, "RS256", "rsa-1", area=bad, **admin)
            )
            assert status_code == 401 and "token scope is invalid" in detail, bad
        # the provider's claim name is for the provider's tokens: gridflow's own keep theirs
        own = city.token("admin", "local-admin", "street:330106001")
        assert (await policies(own))[0] == 403


async def test_a_required_scope_claim_fails_closed(configured: Configured, jwks_url: str) -> None:
    auth = {
        "jwks_url": jwks_url,
        "jwks_issuer": ISSUER,
        "jwks_audience": AUDIENCE,
        "scope_required": True,
    }
    async with configured(auth=auth) as city:
        # a staff token the provider sent without the claim (a forgotten mapper, a renamed
        # claim) is refused, not city-wide
        r = await city.client.get(
            "/v1/cases", headers={"Authorization": f"Bearer {token(RSA_KEY, 'RS256', 'rsa-1')}"}
        )
        assert r.status_code == 401 and "gridflow_scope" in r.json()["detail"]
        assert await status(city, token(RSA_KEY, "RS256", "rsa-1", gridflow_scope=None)) == 401
        # city-wide says so; a scope still limits
        assert await status(city, token(RSA_KEY, "RS256", "rsa-1", gridflow_scope="city")) == 200
        street = token(EC_KEY, "ES256", "ec-1", gridflow_scope="street:330106001")
        assert await status(city, street) == 200
        # residents and workers carry no scope: nothing required of them
        resident = token(RSA_KEY, "RS256", "rsa-1", role="resident")
        r = await city.client.get(
            "/v1/reports/none", headers={"Authorization": f"Bearer {resident}"}
        )
        assert r.status_code == 404
        # gridflow's own tokens are unchanged: no claim is city-wide
        assert await status(city, city.token("operator", "local-op")) == 200
