"""The OpenAPI document lists every endpoint with its auth and its error answers."""

from typing import Any

from tests.harness import Harness

PUBLIC = {"/healthz", "/readyz", "/v1/categories", "/v1/grids", "/v1/grids/locate"}


async def test_every_endpoint_documents_auth_and_errors(h: Harness) -> None:
    doc: dict[str, Any] = (await h.client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert {"HTTPBearer", "DeviceSignature"} <= set(schemes)
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            if path in PUBLIC:
                continue
            codes = set(op["responses"])
            assert {"401", "503"} <= codes, where
            assert op.get("security"), where
            error = op["responses"]["401"]["content"]["application/json"]["schema"]
            assert error["$ref"].endswith("/ErrorBody"), where
    assert "ReportCreate" in doc["components"]["schemas"]
    report_body = doc["paths"]["/v1/reports"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(report_body)


async def test_health(h: Harness) -> None:
    assert (await h.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await h.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["grid_set_version"] == 1
