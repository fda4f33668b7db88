"""Prometheus metrics, scraped as Prometheus does: what moves them, by how much, and that they
never carry a person or a case's contents; the dispatcher's own listener; several workers
summed through prometheus_client's multiprocess mode."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.cases.states import ReportSource
from app.models import CaseEvent
from app.platform.clock import ManualClock
from app.platform.metrics import (
    FAMILIES,
    MULTIPROC_ENV,
    Metrics,
    prepare_multiprocess,
    sample_names,
)
from app.platform.metrics_listener import MetricsListener
from app.platform.settings import MetricsSettings
from app.runtime import Runtime
from tests.app.test_alerts import alert
from tests.conftest import Configured
from tests.dispatch.test_escalation import breached_cases
from tests.dispatch.test_sla import report_in_single_worker_grid
from tests.harness import CITY_POINT, KAFKA, Harness, copy_data, make_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


async def scrape(h: Harness) -> Samples:
    r = await h.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_intake_is_counted_by_source_and_outcome(h: Harness) -> None:
    before = await scrape(h)
    resident = h.auth("resident", "alice")
    await h.report("alice")
    keyed = {**resident, "Idempotency-Key": "k-1"}
    body = {"category": "garbage_overflow", "description": "满了", "location": CITY_POINT}
    first = await h.client.post("/v1/reports", json=body, headers=keyed)
    again = await h.client.post("/v1/reports", json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    far = {**body, "location": {"lat": 39.9, "lon": 116.4}}
    assert (await h.client.post("/v1/reports", json=far, headers=resident)).status_code == 422
    odd = {**body, "category": "no_such_category"}
    assert (await h.client.post("/v1/reports", json=odd, headers=resident)).status_code == 422
    assert (await h.client.post("/v1/reports", json=body)).status_code == 401
    broken = await h.client.post(
        "/v1/reports",
        content=b'{"category": ',
        headers={**resident, "Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert (await h.alert(alert("m-1"))).status_code == 202
    repeat = await h.alert(alert("m-1"))
    assert repeat.status_code == 202 and repeat.json()["duplicate"] is True
    raw, headers = h.signed(alert("m-2"))
    headers["X-Signature"] = "0" * 64
    forged = await h.client.post("/v1/alerts", content=raw, headers=headers)
    assert forged.status_code == 401
    after = await scrape(h)

    intake = "gridflow_intake_total"
    assert delta(before, after, intake, kind="resident", outcome="accepted") == 2
    assert delta(before, after, intake, kind="resident", outcome="duplicate") == 1
    assert delta(before, after, intake, kind="resident", outcome="rejected") == 4
    assert delta(before, after, intake, kind="sensor", outcome="accepted") == 1
    assert delta(before, after, intake, kind="sensor", outcome="duplicate") == 1
    assert delta(before, after, intake, kind="sensor", outcome="rejected") == 1
    rejected = "gridflow_intake_rejected_total"
    assert delta(before, after, rejected, kind="resident", reason="outside_service_area") == 1
    assert delta(before, after, rejected, kind="resident", reason="unknown_category") == 1
    assert delta(before, after, rejected, kind="resident", reason="unauthorized") == 1
    assert delta(before, after, rejected, kind="resident", reason="malformed_json") == 1
    assert delta(before, after, intake, kind="resident", outcome="failed") == 0
    assert delta(before, after, rejected, kind="sensor", reason="unauthorized") == 1


async def test_intake_to_offer_is_timed_from_the_report_to_the_commit(h: Harness) -> None:
    engine = h.runtime.engine
    assert engine is not None

    async def started() -> Any:
        return engine.consumer

    consumer = await h.eventually(started, what="the intake consumer")
    before = await scrape(h)
    async with consumer.in_hand:  # the engine fetches the report but cannot apply it yet
        report = await h.report("bob")
        h.clock.advance(3)
    case_id = await h.case_of(report["id"])
    await h.offered_task(case_id)
    after = await scrape(h)

    name = "gridflow_intake_to_offer_seconds"
    assert delta(before, after, f"{name}_count", kind="resident") == 1
    assert delta(before, after, f"{name}_sum", kind="resident") == pytest.approx(3.0)
    assert delta(before, after, f"{name}_bucket", kind="resident", le="2.5") == 0
    assert delta(before, after, f"{name}_bucket", kind="resident", le="5.0") == 1
    events = "gridflow_case_events_total"
    assert delta(before, after, events, type="CaseOpened") == 1
    assert delta(before, after, events, type="TaskOffered") == 1
    assert delta(before, after, "gridflow_dispatcher_messages_total") >= 1
    assert value(after, "gridflow_open_cases", status="dispatched") == 1
    assert value(after, "gridflow_overdue_cases") == 0


async def test_case_events_and_sla_steps_match_the_timelines(h: Harness) -> None:
    before = await scrape(h)
    [case_id] = await breached_cases(h, 1)  # a fire-lane case accepted, never reached
    h.clock.advance(5 * 60 + 1)
    assert await h.sweep() == 3  # on-site warning, breach, grid leader
    overdue = await scrape(h)
    assert value(overdue, "gridflow_overdue_cases") == 1
    h.clock.advance(10 * 60)
    assert await h.sweep() >= 4  # re-offer, close warning, close breach, street office ...

    async def settled() -> Samples | None:
        # the API's and the engine's commits are counted as they happen; read them all
        after = await scrape(h)
        async with h.runtime.db.reader() as s:
            rows = await s.execute(select(CaseEvent.type, func.count()).group_by(CaseEvent.type))
            stored = {t: n for t, n in rows}
        moved = {t: delta(before, after, "gridflow_case_events_total", type=t) for t in stored}
        return after if moved == stored else None

    after = await h.eventually(settled, what="every stored case event counted")
    async with h.runtime.db.reader() as s:
        rows = await s.execute(
            select(CaseEvent.type, CaseEvent.data).where(CaseEvent.case_id == case_id)
        )
        sla = Counter(
            (t, d["action"] if t == "CaseEscalated" else d["clock"])
            for t, d in rows
            if t in ("SlaWarning", "SlaBreached", "CaseEscalated")
        )
    assert {kind for kind, _ in sla} == {"SlaWarning", "SlaBreached", "CaseEscalated"}
    assert {("SlaBreached", "on_site"), ("SlaBreached", "close")} <= set(sla)
    counters = {
        "SlaWarning": ("gridflow_sla_warnings_total", "clock"),
        "SlaBreached": ("gridflow_sla_breaches_total", "clock"),
        "CaseEscalated": ("gridflow_sla_escalations_total", "action"),
    }
    for (kind, label), n in sla.items():
        name, key = counters[kind]
        assert delta(before, after, name, **{key: label}) == n, (kind, label)


async def test_no_person_and_no_case_contents_in_a_scrape(h: Harness) -> None:
    description = "楼道里堆满杂物 marker-desc-7731"
    address = "西湖区某某路 88 号 marker-addr-4410"
    resident = "resident-marker-5502"
    token = h.token("resident", resident)
    r = await h.client.post(
        "/v1/reports",
        json={
            "category": "garbage_overflow",
            "description": description,
            "address": address,
            "location": CITY_POINT,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    case_id = await h.case_of(report_id)
    task = await h.offered_task(case_id)
    device = h.device()
    assert (await h.alert(alert("marker-ext-9921"))).status_code == 202
    text = (await h.client.get("/metrics")).text
    assert "gridflow_intake_total" in text
    for private in (
        description,
        "marker-desc",
        address,
        "marker-addr",
        resident,
        token,
        report_id,
        case_id,
        task["id"],
        task["worker_id"],
        device["key_id"],
        device["secret"],
        "cam-001",
        "marker-ext",
        str(CITY_POINT["lat"]),
    ):
        assert private not in text, private
    # Every gridflow series is one the code defines, with labels from fixed vocabularies.
    for family in text_string_to_metric_families(text):
        if family.name.startswith("gridflow_"):
            assert FAMILIES.get(family.name) == family.type, family.name
            for s in family.samples:
                assert s.name in sample_names(), s.name


async def test_live_subscribers_are_counted_while_connected(h: Harness) -> None:
    async def subscribers(stream: str, n: int) -> bool:
        return value(await scrape(h), "gridflow_live_subscribers", stream=stream) == n

    async def until(stream: str, n: int) -> None:
        await h.eventually(lambda: subscribers(stream, n), what=f"{n} {stream} subscribers")

    report = await h.report("carol")
    async with h.client.stream(
        "GET", f"/v1/reports/{report['id']}/events", headers=h.auth("resident", "carol")
    ) as stream:
        assert stream.status_code == 200
        await until("sse", 1)
    await until("sse", 0)

    async with websockets.connect(await h.feed_url(), open_timeout=5):
        await until("feed", 1)
    await until("feed", 0)

    # A worker with nothing on offer waits; an offer to them ends the wait.
    grid = h.runtime.grids.require().units[2]
    worker = f"w-{grid.code}-1"
    poll = asyncio.create_task(
        h.client.get("/v1/tasks", params={"wait": 30}, headers=h.auth("worker", worker))
    )
    await until("long_poll", 1)
    await report_in_single_worker_grid(h, n=2)
    answer = await asyncio.wait_for(poll, timeout=15)
    assert answer.status_code == 200 and answer.json()["tasks"]
    assert await subscribers("long_poll", 0)


async def test_metrics_can_be_turned_off(configured: Configured) -> None:
    async with configured(metrics={"enabled": False}) as h:
        r = await h.client.get("/metrics")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert (await h.client.get("/healthz")).status_code == 200


async def test_the_consumers_lag_and_the_outbox_backlog(h: Harness) -> None:
    report = await h.report("dan")
    await h.offered_task(await h.case_of(report["id"]))

    async def caught_up() -> Samples | None:
        samples = await scrape(h)
        lag = {
            dict(labels)["partition"]: v
            for (name, labels), v in samples.items()
            if name == "gridflow_consumer_lag"
        }
        unsent = sum(v for (name, _), v in samples.items() if name == "gridflow_outbox_unsent")
        return samples if lag and not any(lag.values()) and not unsent else None

    samples = await h.eventually(caught_up, what="the dispatcher caught up")
    lag_labels = {labels for name, labels in samples if name == "gridflow_consumer_lag"}
    assert all(dict(labels)["topic"] == "gridflow.intake" for labels in lag_labels)
    if KAFKA:
        # one partition per key's home, of the test's three; the relay has sent everything
        assert 1 <= len(lag_labels) <= 3
        assert value(samples, "gridflow_outbox_oldest_unsent_seconds") == 0
    else:
        assert {dict(labels)["partition"] for labels in lag_labels} == {"0"}
        # the embedded bus sends nothing: its backlog is the lag
        assert not any(name.startswith("gridflow_outbox") for name, _ in samples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_dispatcher_has_a_listener_of_its_own(
    tmp_path: Path, template_data: Path, database_url: str | None
) -> None:
    data = tmp_path / "data"
    copy_data(template_data, data)
    port = free_port()
    settings = make_settings(
        data, database_url, metrics={"dispatcher_port": port, "gauge_cache_s": 0}
    )
    runtime = Runtime(settings, ManualClock())
    await runtime.start(serve_feed=False)  # as `gridflow dispatcher` does
    try:
        assert runtime.metrics_listener is not None
        assert runtime.metrics_listener.address == ("127.0.0.1", port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            r = await client.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            samples = parse(r.text)
            assert ("gridflow_dispatcher_messages_total", frozenset()) in samples
            assert value(samples, "gridflow_overdue_cases") == 0
            assert (await client.get("/v1/cases")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
        # a second dispatcher on this host finds the port taken and runs without metrics
        second = MetricsListener(runtime.metrics, "127.0.0.1", port)
        await second.start()
        assert second.address is None
        await second.stop()
    finally:
        await runtime.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(f"http://127.0.0.1:{port}/metrics")


async def test_figures_read_at_a_scrape_are_reused_and_a_failing_one_is_left_out() -> None:
    metrics = Metrics(MetricsSettings(gauge_cache_s=3600), ManualClock())
    reads = 0

    async def counting() -> list[Any]:
        nonlocal reads
        reads += 1
        return []

    async def broken() -> list[Any]:
        raise ConnectionError("the database is away")

    metrics.add_source(counting)
    metrics.add_source(broken)
    answers = await asyncio.gather(*(metrics.exposition() for _ in range(3)))
    assert reads == 1
    # the same figures each time (the process's own CPU and memory figures move between them)
    ours = [
        {k: v for k, v in parse(body.decode()).items() if k[0].startswith("gridflow_")}
        for body, _ in answers
    ]
    assert any(name == "gridflow_build_info" for name, _ in ours[0])
    assert all(o == ours[0] for o in ours)


WORKER = """
import sys
from app.cases.states import ReportSource
from app.platform.clock import SystemClock
from app.platform.metrics import Metrics
from app.platform.metrics_listener import MetricsListener
from app.platform.settings import MetricsSettings

metrics = Metrics(MetricsSettings(), SystemClock())
assert metrics.multiprocess_dir, "not in multiprocess mode"
for _ in range(int(sys.argv[1])):
    with metrics.intake(ReportSource.RESIDENT, lambda _: None):
        pass
with metrics.subscribed("feed"):
    print("ready", flush=True)
    sys.stdin.readline()
    metrics.close()  # a worker stopping: its live gauges go, its counts stay
"""

SCRAPER = """
import asyncio, sys
from app.platform.clock import SystemClock
from app.platform.metrics import Metrics
from app.platform.metrics_listener import MetricsListener
from app.platform.settings import MetricsSettings

text, _ = asyncio.run(Metrics(MetricsSettings(), SystemClock()).exposition())
sys.stdout.write(text.decode())
"""


def test_several_workers_are_summed_in_one_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "prom"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"stale")  # a previous run's leftovers
    monkeypatch.setenv(MULTIPROC_ENV, str(shared))
    assert prepare_multiprocess(2) == shared and not list(shared.iterdir())
    env = {**os.environ, MULTIPROC_ENV: str(shared)}

    def run(script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def scraped() -> Samples:
        out = subprocess.run(
            [sys.executable, "-c", SCRAPER], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return parse(out.stdout)

    workers = [run(WORKER, "2"), run(WORKER, "3")]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        both = scraped()
        assert value(both, "gridflow_intake_total", kind="resident", outcome="accepted") == 5
        assert value(both, "gridflow_live_subscribers", stream="feed") == 2
        first = workers[0]
        assert first.stdin is not None
        first.stdin.write("stop\n")
        first.stdin.close()
        assert first.wait(timeout=30) == 0
        one = scraped()
        assert value(one, "gridflow_intake_total", kind="resident", outcome="accepted") == 5
        assert value(one, "gridflow_live_subscribers", stream="feed") == 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)


def test_one_worker_needs_no_directory_and_several_get_a_fresh_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "unused")  # recorded, so the test leaves it as it was
    monkeypatch.delenv(MULTIPROC_ENV)
    assert prepare_multiprocess(1) is None and MULTIPROC_ENV not in os.environ
    made = prepare_multiprocess(4)
    assert made is not None and made.is_dir() and not any(made.iterdir())
    assert os.environ[MULTIPROC_ENV] == str(made)
    made.rmdir()


def test_every_family_is_defined_and_documented() -> None:
    metrics = Metrics(MetricsSettings(), ManualClock())
    with metrics.intake(ReportSource.SENSOR, lambda _: None):
        pass
    text, _ = asyncio.run(metrics.exposition())
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    assert {"gridflow_intake", "gridflow_build_info"} <= names
    assert {n for n in names if n.startswith("gridflow_")} <= set(FAMILIES)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, kind in FAMILIES.items():
        shown = name + ("_total" if kind == "counter" else "")
        assert shown in readme, f"README's Metrics section should name {shown}"


def test_gridflow_api_with_two_workers_counts_both_in_every_scrape(tmp_path: Path) -> None:
    """The real command: `gridflow api --workers 2` (uvicorn's worker processes), reports
    spread over both by the kernel, and whichever worker answers a scrape counts them all."""
    port = free_port()
    env = {
        **os.environ,
        "GRIDFLOW_ENV": "test",
        "GRIDFLOW_DATA_DIR": str(tmp_path / "data"),
        "GRIDFLOW_LIMITS__ENABLED": "false",
        "GRIDFLOW_METRICS__GAUGE_CACHE_S": "0",
    }
    for name in ("GRIDFLOW_DB__URL", MULTIPROC_ENV):
        env.pop(name, None)
    api = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(300):  # bounded: 60 s for both workers to start
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert api.poll() is None, "gridflow api exited"
                time.sleep(0.2)
            token = subprocess.run(
                [sys.executable, "-m", "app.cli", "token", "issue", "--role", "resident",
                 "--subject", "alice"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            body = {"category": "garbage_overflow", "description": "满了", "location": CITY_POINT}
            for _ in range(8):
                # A new connection each time, so both workers take some.
                r = httpx.post(
                    f"{base}/v1/reports", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 201, r.text
            for _ in range(4):
                samples = parse(httpx.get(f"{base}/metrics").text)
                accepted = value(
                    samples, "gridflow_intake_total", kind="resident", outcome="accepted"
                )
                assert accepted == 8
    finally:
        api.terminate()
        api.wait(timeout=30)


async def test_garbage_collector_pauses_are_timed_by_generation(h: Harness) -> None:
    before = await scrape(h)
    gc.collect()  # a full collection
    gc.collect(0)
    after = await scrape(h)
    full = "gridflow_gc_pause_seconds_count"
    assert delta(before, after, full, generation="2") >= 1
    assert delta(before, after, full, generation="0") >= 1
    assert delta(before, after, "gridflow_gc_pause_seconds_sum", generation="2") > 0
    every = value(after, "gridflow_gc_pause_seconds_bucket", generation="2", le="+Inf")
    assert every == value(after, full, generation="2")
