"""Prometheus metrics: their names, the objects that count, and what a scrape answers.

Counted in the process where things happen, cheaply (no query per event, no per-request label
lookups on the hot paths):

- intake (`app/http/routes/reports.py`, `alerts.py`): every submission by source and outcome,
  and the error code of each refused one;
- case events, by type, once the transaction that wrote them has committed
  (`Database.on_events`): SLA warnings, breaches and escalation steps among them, and the
  time from a report's intake to the offer made when its case opened;
- live subscribers (WebSocket feed, SSE streams, waiting long polls) while connected, and
  those dropped for falling behind;
- takes the shared rate-limit store failed (app/platform/limiter.py), by reason;
- the pauses of Python's cyclic garbage collector, by generation: a full collection stops the
  event loop while it walks every tracked object, so a process holding many live streams sees
  it as a latency tail (`docs/PERFORMANCE.md`, the live feed's followers).

Read when scraped (and reused for `metrics.gauge_cache_s`): open and overdue cases and the outbox
backlog from the database; where the engine runs, the intake consumer's lag per partition and
the messages it applied and dead-lettered. A scrape carries counts and timings only: every
label value comes from a fixed vocabulary (sources, outcomes, error codes, event types, states,
clocks, topics), never from a report, a case or a person.

Several workers (`gridflow api --workers N`) use prometheus_client's multiprocess mode:
`prepare_multiprocess`, called by the command before uvicorn starts them, gives them a fresh
directory in PROMETHEUS_MULTIPROC_DIR; each worker's counters live in files there, and a scrape
answered by any worker sums them all (subscribers: the live workers'). The figures read at
scrape time come from the worker that answers.

Nothing is created at import time: each `Runtime` makes a `Metrics` with a registry of its own,
so one process (a test run) may make many.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import contextlib
import gc
import logging
import os
import shutil
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from app.cases import queries
from app.cases.events import EventType, NewEvent
from app.cases.states import DEADLINES, CaseStatus, ReportSource
from app.platform import outbox, topics
from app.platform.clock import Clock
from app.platform.db import Database
from app.platform.feed import SubscriberTooSlow
from app.platform.settings import MetricsSettings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Family names (a counter's samples end in _total; a histogram's in _bucket, _sum, _count).
INTAKE = "gridflow_intake"
INTAKE_REJECTED = "gridflow_intake_rejected"
INTAKE_TO_OFFER = "gridflow_intake_to_offer_seconds"
CASE_EVENTS = "gridflow_case_events"
SLA_WARNINGS = "gridflow_sla_warnings"
SLA_BREACHES = "gridflow_sla_breaches"
SLA_ESCALATIONS = "gridflow_sla_escalations"
LIVE_SUBSCRIBERS = "gridflow_live_subscribers"
LIVE_DROPPED = "gridflow_live_dropped"
OPEN_CASES = "gridflow_open_cases"
OVERDUE_CASES = "gridflow_overdue_cases"
OUTBOX_UNSENT = "gridflow_outbox_unsent"
OUTBOX_OLDEST_UNSENT = "gridflow_outbox_oldest_unsent_seconds"
CONSUMER_LAG = "gridflow_consumer_lag"
DISPATCHER_MESSAGES = "gridflow_dispatcher_messages"
DISPATCHER_DEAD_LETTERS = "gridflow_dispatcher_dead_letters"
BUILD_INFO = "gridflow_build_info"
RATE_LIMIT_STORE_FAILURES = "gridflow_rate_limit_store_failures"
GC_PAUSES = "gridflow_gc_pause_seconds"

FAMILIES: Mapping[str, str] = {
    INTAKE: "counter",
    INTAKE_REJECTED: "counter",
    INTAKE_TO_OFFER: "histogram",
    CASE_EVENTS: "counter",
    SLA_WARNINGS: "counter",
    SLA_BREACHES: "counter",
    SLA_ESCALATIONS: "counter",
    LIVE_SUBSCRIBERS: "gauge",
    LIVE_DROPPED: "counter",
    OPEN_CASES: "gauge",
    OVERDUE_CASES: "gauge",
    OUTBOX_UNSENT: "gauge",
    OUTBOX_OLDEST_UNSENT: "gauge",
    CONSUMER_LAG: "gauge",
    DISPATCHER_MESSAGES: "counter",
    DISPATCHER_DEAD_LETTERS: "counter",
    BUILD_INFO: "gauge",
    RATE_LIMIT_STORE_FAILURES: "counter",
    GC_PAUSES: "histogram",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def sample_names() -> frozenset[str]:
    """Every gridflow sample name a scrape can carry (what dashboards and alerts may use)."""
    return frozenset(name + s for name, kind in FAMILIES.items() for s in _SUFFIXES[kind])


# The vocabularies label values come from; anything else is counted as "other".
SOURCES = frozenset(ReportSource)
OUTCOMES = ("accepted", "duplicate", "rejected", "failed")
STREAMS = ("feed", "sse", "long_poll")
STORE_FAILURES = ("timeout", "unreachable", "error")  # the shared rate-limit store's
CLOCKS = frozenset(k.value for k in DEADLINES)
ACTIONS = frozenset(
    {"reoffer", "notify_grid_leader", "notify_street_office", "notify_department", "raise_priority"}
)
# Intake to offer: an offer within a second is the norm; a fire lane's worker must be on site in
# five minutes.
OFFER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# A young collection takes well under a millisecond; a full one over a large heap, a second.
GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
GENERATIONS = ("0", "1", "2")

Source = Callable[[], Awaitable[Iterable[Metric]]]


def _known(value: object, vocabulary: Iterable[str]) -> str:
    return value if isinstance(value, str) and value in vocabulary else "other"


def multiprocess_dir() -> str | None:
    """The directory this process's counters are kept in, if prometheus_client keeps them in
    files: PROMETHEUS_MULTIPROC_DIR was set when it was first imported (see
    `prepare_multiprocess`)."""
    path = os.environ.get(MULTIPROC_ENV)
    if values.ValueClass is values.MutexValue:
        if path:
            log.warning(
                "%s is set, but prometheus_client was imported before it was: this process "
                "serves its own metrics only",
                MULTIPROC_ENV,
            )
        return None
    return path


def prepare_multiprocess(workers: int) -> Path | None:
    """Call before starting `workers` uvicorn workers, which import prometheus_client after
    this: with more than one, PROMETHEUS_MULTIPROC_DIR names a fresh directory (under the
    system's temporary directory, never a shared volume: the files are memory-mapped), removed
    when this process exits. A directory already named there by the operator is emptied
    instead, whatever the number of workers (one directory per `gridflow api`). One worker
    with no directory set needs nothing: it runs in this process. Returns the directory."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous run's counts and dead workers' gauges
            stale.unlink()
        return path
    if workers <= 1:
        return None
    path = Path(tempfile.mkdtemp(prefix="gridflow-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class IntakeCount:
    """One submission being counted: accepted, unless marked a duplicate (a repeated alert, a
    replayed Idempotency-Key)."""

    __slots__ = ("duplicate",)

    def __init__(self) -> None:
        self.duplicate = False


class _GcPauses:
    """Every collection of the cyclic garbage collector in this process, timed by one
    `gc.callbacks` entry. The callback only adds to plain counters (no lock: a collection can
    start inside any allocation, a metric's own locked update among them); a scrape reads them
    as a histogram."""

    def __init__(self) -> None:
        self.buckets = {g: [0] * (len(GC_BUCKETS) + 1) for g in GENERATIONS}
        self.sums = dict.fromkeys(GENERATIONS, 0.0)
        self._started = 0.0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = GENERATIONS[min(info.get("generation", 2), 2)]
        self.buckets[generation][bisect.bisect_left(GC_BUCKETS, pause)] += 1
        self.sums[generation] += pause

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            GC_PAUSES,
            "Pauses of the cyclic garbage collector in the process answering (the event loop "
            "stops meanwhile), by generation (2: a full collection)",
            labels=["generation"],
        )
        for generation in GENERATIONS:
            counts = list(self.buckets[generation])
            cumulative, total = [], 0
            for bound, count in zip([*map(str, GC_BUCKETS), "+Inf"], counts, strict=True):
                total += count
                cumulative.append((bound, total))
            family.add_metric([generation], cumulative, self.sums[generation])
        return [family]


_gc_pauses = _GcPauses()


class _Figures:
    """A collector of the families last read at scrape time."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class Metrics:
    """The counters of one process (one per `Runtime`) and what a scrape of it answers."""

    def __init__(self, settings: MetricsSettings, clock: Clock, *, bus: str = "embedded") -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series
        self.settings = settings
        self.clock = clock
        self.multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry()
        r = self.registry
        self._intake = Counter(
            INTAKE,
            "Reports and alerts submitted, by source and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self._rejected = Counter(
            INTAKE_REJECTED,
            "Refused submissions, by source and error code",
            ["kind", "reason"],
            registry=r,
        )
        self._to_offer = Histogram(
            INTAKE_TO_OFFER,
            "From a report's intake to the offer made when its case opened (commit time)",
            ["kind"],
            buckets=OFFER_BUCKETS,
            registry=r,
        )
        self._case_events = Counter(
            CASE_EVENTS, "Case events committed, by type", ["type"], registry=r
        )
        self._warnings = Counter(SLA_WARNINGS, "SlaWarning events, by clock", ["clock"], registry=r)
        self._breaches = Counter(
            SLA_BREACHES, "SlaBreached events, by clock", ["clock"], registry=r
        )
        self._escalations = Counter(
            SLA_ESCALATIONS,
            "CaseEscalated events (escalation steps, calls after refusals), by action",
            ["action"],
            registry=r,
        )
        self._subscribers = Gauge(
            LIVE_SUBSCRIBERS,
            "Clients connected to a live stream: the WebSocket feed, SSE, waiting long polls",
            ["stream"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self._dropped = Counter(
            LIVE_DROPPED, "Live clients disconnected for falling behind", ["stream"], registry=r
        )
        self._store_failures = Counter(
            RATE_LIMIT_STORE_FAILURES,
            "Takes the shared rate-limit store did not answer in time or at all, by reason "
            "(each falls back to the process's own buckets for limits.store_retry_s)",
            ["reason"],
            registry=r,
        )
        # The hot paths' children, resolved once; every known series exists from the start (at
        # 0), so the first warning or breach is an increase Prometheus can see.
        self._outcomes = {
            (kind, outcome): self._intake.labels(kind, outcome)
            for kind in SOURCES
            for outcome in OUTCOMES
        }
        self._streams = {s: self._subscribers.labels(s) for s in STREAMS}
        for stream in STREAMS:
            self._dropped.labels(stream)
        for reason in STORE_FAILURES:
            self._store_failures.labels(reason)
        for event_type in EventType:
            if event_type is not EventType.REPORT_RECEIVED:
                self._case_events.labels(event_type.value)
        for kind in sorted(CLOCKS):
            self._warnings.labels(kind)
            self._breaches.labels(kind)
        for action in sorted(ACTIONS):
            self._escalations.labels(action)
        self._figures = _Figures()
        self._sources: list[Source] = []
        self._build = _build_info(bus)
        self._fresh_until = float("-inf")
        self._refreshing = asyncio.Lock()
        if self.multiprocess_dir is None:
            r.register(self._figures)
            ProcessCollector(registry=r)  # this process's CPU, memory, open files
            r.register(_gc_pauses)
        _gc_pauses.install()

    # --- counting -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def intake(
        self, kind: ReportSource, refusal: Callable[[Exception], str | None]
    ) -> Iterator[IntakeCount]:
        """Count the submission made in the block: an error that `refusal` names (the code of
        its 4xx answer) refuses it, any other fails it; else it is accepted or a duplicate."""
        count = IntakeCount()
        try:
            yield count
        except Exception as exc:
            reason = refusal(exc)
            if reason is None:
                self._outcomes[kind, "failed"].inc()
            else:
                self._outcomes[kind, "rejected"].inc()
                self._rejected.labels(kind, reason).inc()
            raise
        self._outcomes[kind, "duplicate" if count.duplicate else "accepted"].inc()

    @contextlib.contextmanager
    def subscribed(self, stream: str) -> Iterator[None]:
        """A live client (`stream`: feed, sse, long_poll) connected for the block."""
        gauge = self._streams[stream]
        gauge.inc()
        try:
            yield
        except SubscriberTooSlow:
            self._dropped.labels(stream).inc()
            raise
        finally:
            gauge.dec()

    def rate_limit_store_failed(self, reason: str) -> None:
        """The shared rate-limit store failed a take (`reason`: timeout, unreachable, error)."""
        self._store_failures.labels(_known(reason, STORE_FAILURES)).inc()

    def observe_events(self, events: Sequence[NewEvent]) -> None:
        """Count the case events of a committed transaction (`Database.on_events`). A
        failure here is logged, never raised to the transaction's owner: it has committed."""
        try:
            self._observe(events)
        except Exception:
            log.exception("metrics: could not count %d committed case events", len(events))

    def _observe(self, events: Sequence[NewEvent]) -> None:
        for type_, n in Tally(e.type for e in events).items():
            self._case_events.labels(type_).inc(n)
        now: datetime | None = None
        opened: dict[str, NewEvent] = {}
        for e in events:
            t = e.type
            if t == EventType.CASE_OPENED:
                opened[e.case_id] = e
            elif t == EventType.TASK_OFFERED:
                first = opened.pop(e.case_id, None)
                reported = first.data.get("reported_at") if first is not None else None
                if first is not None and isinstance(reported, str):
                    now = now or self.clock.now()
                    waited = (now - datetime.fromisoformat(reported)).total_seconds()
                    kind = _known(first.data.get("source"), SOURCES)
                    self._to_offer.labels(kind).observe(max(0.0, waited))
            elif t == EventType.SLA_WARNING:
                self._warnings.labels(_known(e.data.get("clock"), CLOCKS)).inc()
            elif t == EventType.SLA_BREACHED:
                self._breaches.labels(_known(e.data.get("clock"), CLOCKS)).inc()
            elif t == EventType.CASE_ESCALATED:
                self._escalations.labels(_known(e.data.get("action"), ACTIONS)).inc()

    # --- scraping -----------------------------------------------------------------------------
    def add_source(self, source: Source) -> None:
        """Families read at scrape time (the database's figures, the engine's consumer)."""
        self._sources.append(source)

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The text a scrape answers, in the format `accept` asks for, and its content type."""
        await self._refresh()
        encoder, content_type = choose_encoder(accept or "")
        if self.multiprocess_dir is None:
            return encoder(self.registry), content_type
        registry, path = CollectorRegistry(), self.multiprocess_dir
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        registry.register(self._figures)
        registry.register(_gc_pauses)
        return encoder(registry), content_type

    async def _refresh(self) -> None:
        if time.monotonic() < self._fresh_until:
            return
        async with self._refreshing:  # concurrent scrapes read once
            if time.monotonic() < self._fresh_until:
                return
            families = [self._build]
            for source in self._sources:
                try:
                    async with asyncio.timeout(5.0):
                        families.extend(await source())
                except Exception as exc:  # a figure missing, never a failed scrape
                    log.warning("metrics: a source failed (%s: %s)", type(exc).__name__, exc)
            self._figures.families = families
            self._fresh_until = time.monotonic() + self.settings.gauge_cache_s

    def close(self) -> None:
        """This process stops counting: its live gauges leave the shared directory."""
        path = self.multiprocess_dir
        if path is not None:
            multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


def _build_info(bus: str) -> Metric:
    try:
        version = metadata.version("gridflow")
    except metadata.PackageNotFoundError:
        version = "unknown"
    info = GaugeMetricFamily(
        BUILD_INFO, "This gridflow's version and bus", labels=["version", "bus"]
    )
    info.add_metric([version, bus], 1)
    return info


def database_source(db: Database, clock: Clock, *, kafka: bool) -> Source:
    """Open cases per state, overdue cases and (with Kafka) the relay's backlog, in three
    queries per refresh."""

    async def read() -> list[Metric]:
        now = clock.now()
        async with db.reader() as session:
            by_status = await queries.open_cases_by_status(session)
            overdue = await queries.count_overdue(session, now)
            unsent = await outbox.unsent(session) if kafka else {}
        open_cases = GaugeMetricFamily(OPEN_CASES, "Open cases, by state", labels=["status"])
        for status in sorted(CaseStatus):
            if status is not CaseStatus.CLOSED:
                open_cases.add_metric([status.value], by_status.get(status, 0))
        late = GaugeMetricFamily(
            OVERDUE_CASES, "Open cases with an on-site, close or verify deadline passed"
        )
        late.add_metric([], overdue)
        out: list[Metric] = [open_cases, late]
        if kafka:
            backlog = GaugeMetricFamily(
                OUTBOX_UNSENT, "Outbox rows not yet published to Kafka", labels=["topic"]
            )
            oldest = GaugeMetricFamily(
                OUTBOX_OLDEST_UNSENT, "Age of the oldest outbox row not yet published"
            )
            for topic in topics.ALL:
                backlog.add_metric([topic], unsent.get(topic, (0, now))[0])
            waiting = [at for _, at in unsent.values()]
            oldest.add_metric([], max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0)
            out += [backlog, oldest]
        return out

    return read


@dataclass(frozen=True)
class EngineFigures:
    """What the engine of this process reports at a scrape."""

    processed: int
    dead_lettered: int
    lag: Mapping[int, int]  # partition -> messages not committed yet


def engine_families(figures: EngineFigures) -> list[Metric]:
    applied = CounterMetricFamily(
        DISPATCHER_MESSAGES, "Intake messages this dispatcher applied since it started"
    )
    applied.add_metric([], figures.processed)
    dead = CounterMetricFamily(
        DISPATCHER_DEAD_LETTERS, "Intake messages this dispatcher gave up on (dead-lettered)"
    )
    dead.add_metric([], figures.dead_lettered)
    lag = GaugeMetricFamily(
        CONSUMER_LAG,
        "Intake messages not yet committed by this dispatcher, per partition it holds",
        labels=["topic", "partition"],
    )
    for partition, behind in sorted(figures.lag.items()):
        lag.add_metric([topics.INTAKE, str(partition)], behind)
    return [applied, dead, lag]
