"""The database handle: engine, sessions, the one place transactions begin and commit.

`transaction()` opens the unit of work (app/platform/uow.py): it commits on success, rolls back on
error, and only then tells listeners (the embedded bus) that new rows exist. SQLite allows one
writer: write transactions here are serialised by an asyncio lock and begin IMMEDIATE, so a
writer never meets a busy database half-way through. PostgreSQL needs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.cases.events import NewEvent
from app.platform.errors import DRIVER_DOWN, DRIVER_LOST
from app.platform.uow import UnitOfWork
from app.policies.document import PolicyBook

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]

OUTBOX_CHANNEL = "gridflow_outbox"
EVENTS_CHANNEL = "gridflow_events"  # case events committed: the live feeds read them


class Database:
    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = 20,
        serialize_writes: bool = False,
        audit_key: bytes | None = None,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # The embedded bus reads the outbox by id, which is only safe if ids commit in order.
        self.serialize_writes = serialize_writes or self.is_sqlite
        # No pre-ping: it costs a round trip per request. A connection found dead raises a
        # disconnect error, which invalidates the whole pool (503 for that request only).
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # Fail fast when the server is away: callers answer 503 rather than hang.
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 0  # no connection opened and closed per request under load
            kwargs["pool_timeout"] = 10
            kwargs["connect_args"] = {"timeout": 5, "command_timeout": 30}
        # No statement's parameters in an error's text: it reaches logs and dead letters,
        # and parameters are what residents wrote.
        self.engine: AsyncEngine = create_async_engine(url, hide_parameters=True, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.audit_key = audit_key  # seals case events (app/cases/audit.py)
        self.policies = PolicyBook()  # this process's cached policy set
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self._write_lock = asyncio.Lock()
        self.pool_size = pool_size
        self._direct_pool: asyncpg.Pool | None = None
        self._direct_lock = asyncio.Lock()
        self._after_commit: list[Callable[[], None]] = []
        self._after_events: list[Callable[[Sequence[NewEvent]], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> None:
        self._after_commit.append(listener)

    def on_events(self, listener: Callable[[Sequence[NewEvent]], None]) -> None:
        """Call `listener` with the case events of each transaction of this process that wrote
        some, once it has committed: the feed hub wakes, the metrics count them. Other
        processes' commits are announced on EVENTS_CHANNEL (PostgreSQL only)."""
        self._after_events.append(listener)

    def committed(self) -> None:
        """Tell the listeners (the embedded bus, the relay) that new outbox rows are committed."""
        for listener in self._after_commit:
            listener()

    @asynccontextmanager
    async def direct(self) -> AsyncIterator[asyncpg.Connection]:
        """A PostgreSQL connection of its own small asyncpg pool, in no transaction: each
        statement on it is its own transaction. For the few hot statements written once in SQL
        (app/intake/write.py), where going through the ORM's pool and session cost more than
        the statement; everything else goes through `transaction()`. A connection that fails
        is closed and reported as `ConnectionError` (503)."""
        if self.is_sqlite:
            raise RuntimeError("direct statements are for PostgreSQL")
        try:
            pool = self._direct_pool or await self._open_direct_pool()
            conn = await pool.acquire(timeout=10)
        except TimeoutError as exc:
            raise PoolTimeout("no direct connection was free in time") from exc
        except DRIVER_DOWN as exc:
            raise ConnectionError(f"the database is unreachable: {exc}") from exc
        try:
            yield conn
        except DRIVER_LOST as exc:
            raise ConnectionError(f"the database connection failed: {exc}") from exc
        finally:
            await pool.release(conn)

    async def _open_direct_pool(self) -> asyncpg.Pool:
        async with self._direct_lock:
            if self._direct_pool is None:
                dsn = self.engine.url.set(drivername="postgresql")
                self._direct_pool = await asyncpg.create_pool(
                    dsn.render_as_string(hide_password=False),
                    min_size=0,
                    max_size=max(2, self.pool_size // 2),
                    timeout=5,
                    command_timeout=30,
                    reset=_no_reset,
                )
            return self._direct_pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """One read-write unit of work. Commits when the block ends without an exception."""
        if self.serialize_writes:
            async with self._write_lock, self.sessions() as session:
                if self.is_sqlite:
                    await session.connection(execution_options={"sqlite_immediate": True})
                uow = self._unit_of_work(session)
                yield uow
                await uow.flush()
                await self._announce(uow)
                await session.commit()
        else:
            async with self.sessions() as session:
                uow = self._unit_of_work(session)
                yield uow
                await uow.flush()
                await self._announce(uow)
                await session.commit()
        self.committed()
        if uow.events_written:
            for listener in self._after_events:
                listener(uow.written)

    async def listen(self, channel: str, on_notify: Callable[[], None], what: str) -> None:
        """LISTEN on `channel` for as long as the caller's task runs, calling `on_notify` for
        each notification and once after every (re)connection, since notifications sent while
        away are lost. PostgreSQL only; the callers poll as well, so a lost connection only
        costs latency until it is back."""
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(dsn, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda *_, ev=lost: ev.set())
                await conn.add_listener(channel, lambda *_: on_notify())
                on_notify()
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: LISTEN unavailable (%s); polling meanwhile", what, exc)
                await asyncio.sleep(2)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    def _unit_of_work(self, session: AsyncSession) -> UnitOfWork:
        return UnitOfWork(session, self.audit_key, self.policies, order_events=not self.is_sqlite)

    async def _announce(self, uow: UnitOfWork) -> None:
        """Notifications delivered at commit to every listener, in any process: the relays
        (outbox rows) and the live feeds (case events). PostgreSQL only."""
        if self.is_sqlite:
            return
        channels = [OUTBOX_CHANNEL] if uow.outbox_written else []
        if uow.events_written:
            channels.append(EVENTS_CHANNEL)
        if channels:  # one round trip for both
            notify = ", ".join(f"pg_notify('{c}', '')" for c in channels)
            await uow.session.execute(text(f"SELECT {notify}"))

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A read-only session; never commits. Loaded objects stay readable after it closes."""
        async with self.sessions() as session:
            yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations on this database."""
        if self.is_sqlite:
            db_path = self.engine.url.database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade, revision, self.audit_key)

    async def lock_for_migration(self, session: AsyncSession) -> None:
        """Serialise schema and seed work across processes (PostgreSQL; SQLite has one writer)."""
        if not self.is_sqlite:
            await session.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))

    async def dispose(self) -> None:
        if self._direct_pool is not None:
            await self._direct_pool.close()
            self._direct_pool = None
        await self.engine.dispose()


async def _no_reset(_: asyncpg.Connection) -> None:
    """Direct statements leave no session state behind (asyncpg rolls back an open
    transaction by itself): skip the reset round trip on every release."""


def alembic_config() -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    return cfg


MIGRATION_LOCK = 0x6D696772  # "migr": several processes starting at once migrate one at a time


def _upgrade(connection: Connection, revision: str, audit_key: bytes | None) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    # A migration that reseals the case histories (0017) needs the key they are sealed with.
    cfg.attributes["audit_key"] = audit_key
    command.upgrade(cfg, revision)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# The SQLSTATEs of a transaction that lost a race with another, not of a wrong statement: the
# same work run again succeeds (serialization_failure, deadlock_detected).
LOST_RACE_SQLSTATES = frozenset({"40001", "40P01"})


def unreachable(exc: BaseException) -> bool:
    """The database could not be reached or the connection broke: wait and try again."""
    if isinstance(exc, OperationalError | ConnectionError | TimeoutError | OSError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def lost_race(exc: BaseException) -> bool:
    """PostgreSQL rolled the transaction back to break a deadlock or a serialization conflict."""
    return (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in LOST_RACE_SQLSTATES
    )
