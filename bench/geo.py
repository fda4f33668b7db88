"""Geofencing benchmark (by hand, never in CI): 50,000 irregular unit grids.

    deploy/local/with-services.sh .venv/bin/python bench/geo.py      # with the PostGIS baseline
    .venv/bin/python bench/geo.py --no-postgis                       # geo only

Measures, in one run on this machine:
  1. import + validate: GeoJSON text → parsed, every check of `geo.validate`, index built;
     and the same through gridflow's import into a fresh embedded (SQLite) database;
  2. index memory: resident-set growth while the index is built (and every grid's point
     locator warmed) over grids already in memory;
  3. single-point `locate`: per-call latency over random points (median, p99);
  4. `locate_many`: points per second over batches of 200,000 random points;
  5. baselines in the same run: a naive loop testing every grid's `contains`, and PostGIS
     answering one point per query (GiST index, prepared statement), plus PostGIS batched.
Prints a table and writes it as JSON to bench/results/. Every loop is bounded in count and
time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geo import GridIndex, GridLevel, Rules, check_collection  # noqa: E402
from geo.synthetic import SHANGHAI, synthetic_city  # noqa: E402

PG_DSN = os.environ.get("GRIDFLOW_BENCH_PG", "postgresql://gridflow@127.0.0.1:55432/postgres")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settled_rss() -> int:
    """Resident set size after freed memory has gone back to the system."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def random_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(SHANGHAI.west, SHANGHAI.east, n),
        rng.uniform(SHANGHAI.south, SHANGHAI.north, n),
    )


def measure_locate(index: GridIndex, n: int) -> dict[str, float]:
    xs, ys = random_points(n, 11)
    pts = list(zip(xs.tolist(), ys.tolist(), strict=True))
    for x, y in pts[:2000]:  # warm: each grid builds its point locator on first use
        index.locate(x, y)
    times = []
    clock = time.perf_counter_ns
    for x, y in pts:
        t = clock()
        index.locate(x, y)
        times.append(clock() - t)
    return {"median_us": pct(times, 50) / 1000, "p99_us": pct(times, 99) / 1000}


def measure_locate_many(index: GridIndex, batch: int, reps: int) -> dict[str, float]:
    xs, ys = random_points(batch, 12)
    index.locate_many(xs, ys)  # warm
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        index.locate_many(xs, ys)
        rates.append(batch / (time.perf_counter() - t))
    return {"points_per_s_median": statistics.median(rates), "points_per_s_best": max(rates)}


def measure_naive(index: GridIndex, n: int) -> dict[str, float]:
    """The obvious implementation: test every unit grid, keep the smallest covering code."""
    xs, ys = random_points(n, 13)
    units = list(index.units)
    times = []
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        t = time.perf_counter()
        point = shapely.Point(x, y)
        owner = None
        for g in units:
            if g.geometry.intersects(point):
                owner = g
                break
        times.append(time.perf_counter() - t)
        assert owner is index.locate(x, y)
    return {"median_us": statistics.median(times) * 1e6}


async def measure_postgis(index: GridIndex, n_single: int, n_batch: int) -> dict[str, Any]:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return {"skipped": f"no PostgreSQL at the benchmark address ({exc.__class__.__name__})"}
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name='postgis'"):
            return {"skipped": "PostgreSQL has no PostGIS"}
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        await conn.execute("DROP TABLE IF EXISTS bench_grids")
        await conn.execute(
            "CREATE TABLE bench_grids (code text PRIMARY KEY, geom geometry(Geometry, 4326))"
        )
        t = time.perf_counter()
        rows = [(g.code, shapely.to_wkb(g.geometry)) for g in index.units]
        await conn.executemany(
            "INSERT INTO bench_grids VALUES ($1, ST_SetSRID(ST_GeomFromWKB($2), 4326))", rows
        )
        await conn.execute("CREATE INDEX ON bench_grids USING gist (geom)")
        await conn.execute("ANALYZE bench_grids")
        load_s = time.perf_counter() - t
        one = await conn.prepare(
            "SELECT code FROM bench_grids "
            "WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326)) "
            "ORDER BY code LIMIT 1"
        )
        xs, ys = random_points(n_single, 14)
        pts = list(zip(xs.tolist(), ys.tolist(), strict=True))
        for x, y in pts[:200]:
            await one.fetchval(x, y)
        times, wrong = [], 0
        for x, y in pts:
            t = time.perf_counter()
            code = await one.fetchval(x, y)
            times.append(time.perf_counter() - t)
            mine = index.locate(x, y)
            wrong += code != (mine.code if mine else None)
        bx, by = random_points(n_batch, 15)
        t = time.perf_counter()
        await conn.fetch(
            "SELECT DISTINCT ON (p.i) p.i, g.code "
            "FROM unnest($1::float8[], $2::float8[]) WITH ORDINALITY AS p(x, y, i) "
            "JOIN bench_grids g ON ST_Intersects(g.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326)) "
            "ORDER BY p.i, g.code",
            bx.tolist(),
            by.tolist(),
        )
        batch_rate = n_batch / (time.perf_counter() - t)
        return {
            "load_and_index_s": load_s,
            "single_median_us": statistics.median(times) * 1e6,
            "single_p99_us": pct(times, 99) * 1e6,
            "single_points_per_s": len(times) / sum(times),
            "batched_points_per_s": batch_rate,
            "disagreements": wrong,
        }
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_grids")
        await conn.close()


async def measure_app_import(text: str) -> dict[str, float]:
    """The same GeoJSON through gridflow's own import into a fresh embedded database."""
    from app.gridsets.store import LiveGrids, import_grid_set
    from app.platform.db import Database

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/bench.db", serialize_writes=True)
        await db.upgrade()
        live = LiveGrids(snap_m=30)
        t = time.perf_counter()
        done = await import_grid_set(
            db, live, json.loads(text), Rules(), source="bench", now=datetime.now(UTC)
        )
        elapsed = time.perf_counter() - t
        await db.dispose()
    assert live.index is not None and live.index.version == done.version
    return {"sqlite_import_s": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cols", type=int, default=250)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--no-postgis", action="store_true")
    parser.add_argument("--no-app", action="store_true", help="skip the SQLite import")
    args = parser.parse_args()

    t = time.perf_counter()
    grids = synthetic_city(args.cols, args.rows)
    generate_s = time.perf_counter() - t
    units = [g for g in grids if g.level is GridLevel.UNIT]
    vertices = [len(shapely.get_coordinates(g.geometry)) - 1 for g in units]
    text = json.dumps(GridIndex(grids, 0).to_geojson())

    t = time.perf_counter()
    collection = json.loads(text)
    parse_s = time.perf_counter() - t
    t = time.perf_counter()
    report = check_collection(collection, Rules())
    validate_s = time.perf_counter() - t
    assert report.ok, report.problems[:3]
    del collection
    before = settled_rss()
    t = time.perf_counter()
    index = GridIndex(report.grids, 1, snap_m=30)
    build_s = time.perf_counter() - t
    index.locate_many(*random_points(200_000, 10))  # every grid's point locator built
    index_mb = (settled_rss() - before) / 2**20

    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "shapely": f"{shapely.__version__} (GEOS {shapely.geos_version_string})",
        "grids": len(grids),
        "unit_grids": len(units),
        "vertices_per_unit": {
            "min": min(vertices),
            "median": statistics.median(vertices),
            "max": max(vertices),
        },
        "geojson_mb": len(text) / 2**20,
        "generate_s": generate_s,
        "import": {
            "parse_s": parse_s,
            "validate_s": validate_s,
            "index_build_s": build_s,
            "total_s": parse_s + validate_s + build_s,
        },
        "index_memory_mb": index_mb,
        "settled_cells": index.settled_share,
        "locate": measure_locate(index, 50_000),
        "locate_many": measure_locate_many(index, 200_000, 7),
        "naive_contains_loop": measure_naive(index, 200),
    }
    if not args.no_app:
        result["import"].update(asyncio.run(measure_app_import(text)))
    if not args.no_postgis:
        result["postgis"] = asyncio.run(measure_postgis(index, 3000, 100_000))

    single = result["locate"]["median_us"]
    result["ratios"] = {
        "naive_over_locate": result["naive_contains_loop"]["median_us"] / single,
    }
    pg = result.get("postgis", {})
    if "single_median_us" in pg:
        result["ratios"]["postgis_single_over_locate"] = pg["single_median_us"] / single
        result["ratios"]["locate_many_over_postgis_batched"] = (
            result["locate_many"]["points_per_s_median"] / pg["batched_points_per_s"]
        )
    out = REPO / "bench" / "results" / f"geo-{datetime.now(UTC).date()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
