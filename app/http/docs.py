"""OpenAPI helpers: the error answers an endpoint can give, documented with their body."""

from __future__ import annotations

from typing import Any

from app.http.schemas import ErrorBody

_MEANING = {
    400: "Malformed request (malformed_json, bad_request)",
    401: "Missing, invalid or expired credentials (unauthorized)",
    403: "Authenticated, but not allowed (forbidden)",
    404: "No such resource",
    409: "Impossible in the current state (invalid_transition); `state` gives the state",
    413: "Body or photo too large (payload_too_large)",
    415: "Unsupported content type",
    422: "Invalid input (validation_error, outside_service_area, unknown_category, "
    "invalid_photo, too_far_from_case)",
    503: "Database unavailable; retry",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in (*statuses, 503)}


def body_docs(schema_ref: str, part: str) -> dict[str, Any]:
    """A request body accepted as JSON or as multipart with a JSON part plus photos."""
    ref = {"$ref": f"#/components/schemas/{schema_ref}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ref},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [part],
                        "properties": {
                            part: {"type": "string", "description": f"{schema_ref} as JSON"},
                            "photos": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "JPEG, PNG or WebP files",
                            },
                        },
                    }
                },
            },
        }
    }
