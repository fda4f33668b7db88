"""The centre's figures: `GET /v1/stats`, as JSON or CSV."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AwareDatetime

from app.auth.scopes import case_reach
from app.cases import stats
from app.http.deps import Operator, Reader, RuntimeDep, limit
from app.http.docs import errors
from app.http.schemas import StatsFigures, StatsRead

router = APIRouter(prefix="/v1", tags=["operations"])


@router.get(
    "/stats",
    dependencies=[limit("reads")],
    response_model=StatsRead,
    summary="On-time closure, right-first-time dispatch, rework, satisfaction and times",
    description="Over the cases opened in [`from`, `to`) (default: the last 30 days), in total "
    "and grouped `by` grid, street, department or category; `grid`: only the cases of that "
    "grid, community, street or district (a code prefix). `format=csv` gives one row per "
    "group and a last row for the total. Every figure is defined in docs/STATS.md. A scoped "
    "token counts only the cases of its scope; a `grid` outside it is 403 `outside_scope`.",
    responses={
        **errors(401, 403, 422),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
async def read_stats(
    who: Operator,
    session: Reader,
    runtime: RuntimeDep,
    by: stats.GroupBy | None = None,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    format: Literal["json", "csv"] = "json",
    grid: Annotated[
        str | None,
        Query(max_length=20, pattern=r"^[0-9]+$", description="a grid code or prefix"),
    ] = None,
) -> StatsRead | Response:
    end = end or runtime.clock.now()
    start = start or end - timedelta(days=30)
    stats.check_range(start, end)
    where = case_reach(who.scope, grid=grid)
    groups, total = await stats.compute(
        session, start=start, end=end, by=by, index=runtime.grids.index, where=where
    )
    if format == "csv":
        return Response(stats.to_csv(groups, total), media_type="text/csv; charset=utf-8")
    return StatsRead(
        start=start,
        end=end,
        by=by,
        groups=[StatsFigures.model_validate(g) for g in groups],
        total=StatsFigures.model_validate(total),
    )
