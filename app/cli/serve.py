"""The long-running processes: `serve` (everything in one), `api`, `dispatcher`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

from app.cli.common import settings
from app.platform import collector
from app.platform.settings import Settings

HOST = typer.Option(help="address to listen on")
PORT = typer.Option(help="port to listen on")


def serve(
    host: Annotated[str, HOST] = "127.0.0.1",
    port: Annotated[int, PORT] = 8000,
) -> None:
    """Run the API with the embedded engine (SQLite and the in-process bus by default).

    Example: gridflow serve --port 8000
    """
    import uvicorn

    from app.http.app import create_app

    s = settings()
    secret_file = s.data_dir / "jwt-secret"
    s.jwt_secret()  # fail fast on a bad or missing secret
    print(f"gridflow: serving the embedded default on http://{host}:{port}")
    print(f"  data directory: {s.data_dir.resolve()}")
    print(f"  API documentation: http://{host}:{port}/docs")
    print("  tokens:  .venv/bin/gridflow token issue --role resident --subject alice")
    print("           .venv/bin/gridflow token issue --role operator --subject ops-1")
    print("           .venv/bin/gridflow token issue --role worker --subject w-33010600100101-1")
    print("  demo:    .venv/bin/gridflow demo   (in another terminal)")
    if s.auth.secret is None:
        print(f"  signing secret: {secret_file} (created on first use)")
    sys.stdout.flush()
    collector.tune(s.gc_freeze)
    uvicorn.run(
        create_app(s),
        host=host,
        port=port,
        log_config=None,  # gridflow's logging, set up by the command (app/platform/logs.py)
        timeout_graceful_shutdown=5,
    )


def api(
    host: Annotated[str, HOST] = "127.0.0.1",
    port: Annotated[int, PORT] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="log every request (off by default: a proxy usually does)")
    ] = False,
) -> None:
    """Run the HTTP API only (production; the engine runs in `gridflow dispatcher`).

    Each worker reads the case timeline for its own live subscribers. Migrations run once
    here, before the workers start.

    Example: gridflow api --host 0.0.0.0 --port 8000 --workers 4
    """
    import uvicorn

    from app.platform.metrics import prepare_multiprocess

    s = settings()
    s.jwt_secret()
    # Before anything counts: several workers share one metrics directory, emptied here.
    prepare_multiprocess(workers)
    if s.auto_migrate:
        asyncio.run(_prepare(s))
    os.environ["GRIDFLOW_RUN_ENGINE"] = "false"
    os.environ["GRIDFLOW_AUTO_MIGRATE"] = "false"
    uvicorn.run(
        "app.cli.serve:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # each worker sets up gridflow's logging in create_app
        access_log=access_log,
        timeout_graceful_shutdown=10,
        # Longer than a proxy's or a client's idle expiry, so neither reuses a connection just
        # as the server closes it (a 502 at the proxy, a ReadError at the client).
        timeout_keep_alive=75,
        proxy_headers=True,
    )


def worker_app() -> Any:
    """The app of one `gridflow api` worker process."""
    from app.http.app import create_app

    s = Settings()
    collector.tune(s.gc_freeze)
    return create_app(s)


async def _prepare(s: Settings) -> None:
    from app.runtime import Runtime

    runtime = Runtime(s)
    try:
        await runtime.prepare_database()
    finally:
        await runtime.db.dispose()


def dispatcher() -> None:
    """Run the engine without HTTP: intake consumer, outbox relay and SLA clock.

    SIGTERM finishes the message in hand, commits it and leaves the consumer group.

    Example: GRIDFLOW_BUS__KIND=kafka gridflow dispatcher
    """
    from app.runtime import Runtime

    s = settings().model_copy(update={"run_engine": True})

    collector.tune(s.gc_freeze)

    async def run() -> None:
        runtime = Runtime(s)
        await runtime.start(serve_feed=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        logging.getLogger("gridflow").info("dispatcher running (bus: %s)", s.bus.kind)
        print("gridflow dispatcher: running", flush=True)
        await stop.wait()
        print("gridflow dispatcher: stopping", flush=True)
        await runtime.stop()
        processed = runtime.engine.processed if runtime.engine else 0
        print(f"gridflow dispatcher: stopped after {processed} messages", flush=True)

    asyncio.run(run())


def register(root: typer.Typer) -> None:
    root.command()(serve)
    root.command()(api)
    root.command()(dispatcher)
