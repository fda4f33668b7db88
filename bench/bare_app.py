"""The baseline for bench/pipeline.py: a bare FastAPI POST endpoint that validates the same body
and answers 201, with no auth, database or bus."""

from __future__ import annotations

import uuid

from fastapi import FastAPI

from app.http.schemas import ReportCreate

app = FastAPI()


@app.post("/v1/reports", status_code=201)
async def create(report: ReportCreate) -> dict[str, str]:
    return {"id": str(uuid.uuid4()), "status": "received", "category": report.category}
