"""The composition root: builds every long-lived part from settings, starts and stops them.

Used by the HTTP app's lifespan and by the CLI; nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from app.auth.tokens import TokenVerifier
from app.cases.checkpoint_take import CheckpointKeeper
from app.cases.checkpoints import CheckpointKey
from app.devices.keys import KeyOwners
from app.gridsets.store import LiveGrids
from app.photos.store import PhotoStore
from app.platform.bus import Bus, EmbeddedBus
from app.platform.clock import Clock, SystemClock
from app.platform.db import Database
from app.platform.feed import FeedHub
from app.platform.kafka_bus import KafkaBus, ensure_topics
from app.platform.limiter import Limiter
from app.platform.metrics import EngineFigures, Metrics, database_source, engine_families
from app.platform.metrics_listener import MetricsListener
from app.platform.relay import OutboxRelay
from app.platform.settings import Settings
from app.platform.shutdown import bounded, cancel
from app.platform.tracing import Tracing
from app.policies.categories import CategoryCache
from app.privacy.access import AccessLog
from app.privacy.retention import Retention
from app.seed import seed_categories, seed_demo_city
from dispatch.context import DispatchContext
from dispatch.engine import Engine
from dispatch.holidays import log_calendar_coverage

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        s = self.settings
        self.secret = s.jwt_secret()
        # Derived once: in development each derivation reads the secret file.
        self.device_master_key = s.device_master_key()
        self.key_owners = KeyOwners()  # which device each signing key belongs to
        self.tokens = TokenVerifier(
            self.secret,
            issuer=s.auth.issuer,
            audience=s.auth.audience,
            jwks_url=s.auth.jwks_url,
            jwks_issuer=s.auth.jwks_issuer,
            jwks_audience=s.auth.jwks_audience,
            role_claim=s.auth.role_claim,
            scope_claim=s.auth.scope_claim,
            scope_required=s.auth.scope_required,
        )
        embedded = s.bus.kind == "embedded"
        self.db = Database(
            s.database_url,
            echo=s.db.echo,
            pool_size=s.db.pool_size,
            serialize_writes=embedded,
            audit_key=s.audit_key(),
        )
        self.bus: Bus = (
            EmbeddedBus(self.db, s.bus.poll_interval_s) if embedded else KafkaBus(s.kafka)
        )
        self.relay: OutboxRelay | None = (
            OutboxRelay(self.db, s.kafka, s.bus.poll_interval_s, self.clock)
            if not embedded and s.run_engine and s.run_relay
            else None
        )
        self.grids = LiveGrids(snap_m=s.geo.snap_m)
        self._grid_watch: asyncio.Task[None] | None = None
        self.categories = CategoryCache()
        self.photos = PhotoStore(s.photo_dir)
        self.ctx = DispatchContext(clock=self.clock, grids=self.grids, sla=s.sla)
        self.tracing = Tracing(s.tracing)  # off unless tracing.enabled
        self.hub = FeedHub(self.db, poll_s=s.bus.poll_interval_s)
        self.access = AccessLog(self.db, self.clock, s.privacy)  # staff reads of personal data
        self.metrics = Metrics(s.metrics, self.clock, bus=s.bus.kind)
        self.db.on_events(self.metrics.observe_events)
        self.metrics.add_source(database_source(self.db, self.clock, kafka=not embedded))
        self.metrics_listener: MetricsListener | None = None
        # Rate limits: shared by every API process on PostgreSQL (app/platform/limiter.py).
        self.limits = Limiter(
            s.limits, s.database_url, on_failure=self.metrics.rate_limit_store_failed
        )
        self.engine: Engine | None = (
            Engine(
                self.db,
                self.bus,
                self.ctx,
                sweep_interval_s=s.sla.sweep_interval_s,
                max_attempts=s.kafka.max_attempts,
                group_id=s.kafka.dispatcher_group,
                outbox_keep_s=s.bus.outbox_keep_s,
                prune_interval_s=s.bus.outbox_prune_interval_s,
                batch_size=s.bus.batch_size,
                tracing=self.tracing,
                retention=Retention(self.db, self.photos, s.privacy),
                retention_interval_s=s.privacy.retention_interval_s,
            )
            if s.run_engine
            else None
        )
        if self.engine is not None:
            self.metrics.add_source(self._engine_figures)
        # Signed checkpoints of every case's head, where the engine runs (one process takes each).
        self.checkpoints: CheckpointKeeper | None = (
            CheckpointKeeper(
                self.db,
                CheckpointKey(s.audit_key()),
                self.clock,
                interval_s=s.audit.checkpoint_interval_s,
                keep_leaves=s.audit.checkpoint_keep_leaves,
            )
            if s.run_engine and s.audit.checkpoint_interval_s > 0
            else None
        )

    async def _engine_figures(self) -> list[Metric]:
        engine = self.engine
        assert engine is not None
        consumer = engine.consumer
        lag = await consumer.lag() if consumer is not None else {}
        return engine_families(EngineFigures(engine.processed, engine.dead_lettered, lag))

    async def prepare_database(self) -> None:
        """Migrate, seed categories (and the demo city into an empty database), load grids."""
        await self.db.upgrade()
        async with self.db.transaction() as uow:
            session = uow.session
            await self.db.lock_for_migration(session)
            await seed_categories(session)
            if self.settings.seed_demo_city and await seed_demo_city(
                session, self.settings.data_dir, self.clock.now(), self.device_master_key
            ):
                log.info("loaded the bundled demo city")
        await self.reload_grids()

    async def reload_grids(self) -> None:
        await self.grids.refresh(self.db)
        async with self.db.reader() as session:
            await self.categories.load(session)

    async def _watch_grids(self) -> None:
        """Swap in a grid set imported by another process."""
        while True:
            await asyncio.sleep(self.settings.geo.reload_interval_s)
            try:
                await self.grids.refresh(self.db)
            except Exception:  # a database outage must not end the watch
                log.warning("could not check for a new grid set", exc_info=True)

    async def start(self, *, serve_feed: bool = True) -> None:
        """Start every part this process runs. The database must be reachable; Kafka need not
        be for the relay (it retries), but consumers need it to start. Without the feed (the
        engine with no HTTP: `gridflow dispatcher`) metrics get a listener of their own."""
        # Once per process: a year the national calendar does not know counts its holidays as
        # working days, which nobody would notice from the clocks alone.
        log_calendar_coverage(self.settings.sla.calendar, self.clock.now())
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.auto_migrate:
            await self.prepare_database()
        else:
            await self.reload_grids()
        await self.bus.start()
        if self.settings.bus.kind == "kafka" and self.settings.kafka_auto_create_topics:
            await ensure_topics(self.settings.kafka)
        if self.relay is not None:
            await self.relay.start()
        if serve_feed:
            await self.hub.start()
            self.limits.start()  # HTTP is served here: prune the shared buckets
            await self.access.start()
        if self.engine is not None:
            await self.engine.start()
        if self.checkpoints is not None:
            await self.checkpoints.start()
        self._grid_watch = asyncio.create_task(self._watch_grids(), name="grid-watch")
        m = self.settings.metrics
        if not serve_feed and m.enabled and m.dispatcher_port:
            self.metrics_listener = MetricsListener(
                self.metrics, m.dispatcher_host, m.dispatcher_port
            )
            await self.metrics_listener.start()

    async def stop(self) -> None:
        if self.metrics_listener is not None:
            await bounded("the metrics listener", self.metrics_listener.stop(), 2.0)
        await cancel(self._grid_watch)
        # Each step is bounded (app/platform/shutdown.py): told to stop, a process is gone within
        # a minute whatever the broker or the database does.
        if self.checkpoints is not None:
            await bounded("the audit checkpoints", self.checkpoints.stop(), 5.0)
        if self.engine is not None:
            await bounded("the dispatcher", self.engine.stop(), 25.0)
        if self.relay is not None:
            await bounded("the outbox relay", self.relay.stop(), 12.0)
        await bounded("the live feed", self.hub.stop(), 8.0)
        await bounded("the rate limits' connections", self.limits.close(), 3.0)
        await bounded("the access log", self.access.stop(), 8.0)
        await bounded("the bus", self.bus.stop(), 5.0)
        await bounded("closing database connections", self.db.dispose(), 8.0)
        self.metrics.close()
        # Spans still buffered go out now (a collector that is away: at most its timeout).
        await bounded("exporting traces", asyncio.to_thread(self.tracing.shutdown), 5.0)
