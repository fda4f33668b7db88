"""The `gridflow` command: serve, tokens, devices, database, grids and the demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from app.auth.tokens import Role, issue_token
from app.platform.db import Database
from app.platform.settings import Settings


def _settings() -> Settings:
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.http.app import create_app

    settings = _settings()
    secret_file = settings.data_dir / "jwt-secret"
    settings.jwt_secret()  # fail fast on a bad or missing secret
    print(f"gridflow: serving the embedded default on http://{args.host}:{args.port}")
    print(f"  data directory: {settings.data_dir.resolve()}")
    print(f"  API documentation: http://{args.host}:{args.port}/docs")
    print("  tokens:  .venv/bin/gridflow token issue --role resident --subject alice")
    print("           .venv/bin/gridflow token issue --role operator --subject ops-1")
    print("           .venv/bin/gridflow token issue --role worker --subject w-33010600100101-1")
    print("  demo:    .venv/bin/gridflow demo   (in another terminal)")
    if settings.auth.secret is None:
        print(f"  signing secret: {secret_file} (created on first use)")
    sys.stdout.flush()
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """The HTTP API only (no engine): N uvicorn workers, each reading the case timeline for
    its own live subscribers. Migrations run once here, before the workers start."""
    import os

    import uvicorn

    settings = _settings()
    settings.jwt_secret()
    if settings.auto_migrate:
        asyncio.run(_prepare(settings))
    os.environ["GRIDFLOW_RUN_ENGINE"] = "false"
    os.environ["GRIDFLOW_AUTO_MIGRATE"] = "false"
    uvicorn.run(
        "app.http.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
        proxy_headers=True,
    )
    return 0


async def _prepare(settings: Settings) -> None:
    from app.runtime import Runtime

    runtime = Runtime(settings)
    try:
        await runtime.prepare_database()
    finally:
        await runtime.db.dispose()


def cmd_dispatcher(_: argparse.Namespace) -> int:
    """The engine without HTTP: intake consumer, outbox relay and SLA clock. SIGTERM finishes
    the message in hand, commits it and leaves the consumer group."""
    import signal

    from app.runtime import Runtime

    settings = _settings().model_copy(update={"run_engine": True})

    async def run() -> int:
        runtime = Runtime(settings)
        await runtime.start(serve_feed=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        logging.getLogger("gridflow").info("dispatcher running (bus: %s)", settings.bus.kind)
        print("gridflow dispatcher: running", flush=True)
        await stop.wait()
        print("gridflow dispatcher: stopping", flush=True)
        await runtime.stop()
        processed = runtime.engine.processed if runtime.engine else 0
        print(f"gridflow dispatcher: stopped after {processed} messages", flush=True)
        return 0

    return asyncio.run(run())


def cmd_kafka_init(_: argparse.Namespace) -> int:
    from app.platform.kafka_bus import ensure_topics, physical
    from app.platform.topics import ALL

    settings = _settings()
    created = asyncio.run(ensure_topics(settings.kafka))
    for name in (physical(settings.kafka, t) for t in ALL):
        state = "created" if name in created else "exists"
        print(
            f"{name}\t{state}\tpartitions={settings.kafka.partitions}"
            f"\treplication={settings.kafka.replication_factor}"
        )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings()
    token = issue_token(
        settings.jwt_secret(),
        role=Role(args.role),
        subject=args.subject,
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        now=datetime.now(UTC),
        ttl_s=args.ttl or settings.auth.token_ttl_s,
    )
    print(token)
    return 0


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    """The configured database, migrated to head, disposed of afterwards."""
    db = Database(settings.database_url)
    try:
        await db.upgrade()
        yield db
    finally:
        await db.dispose()


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    settings = _settings()

    async def run() -> None:
        async with _database(settings):  # entering it migrates to head
            print(f"gridflow: database at head ({_redact(settings.database_url)})")

    asyncio.run(run())
    return 0


def _print_key(device_id: str, key_id: str, secret: str) -> None:
    """The only time a secret is shown: on standard output, never in a log."""
    print(json.dumps({"device_id": device_id, "key_id": key_id, "secret": secret}))


def cmd_device_create(args: argparse.Namespace) -> int:
    from app.devices.keys import add_key
    from app.models import Device

    settings = _settings()

    async def run() -> int:
        now = datetime.now(UTC)
        async with _database(settings) as db, db.transaction() as uow:
            session = uow.session
            if await session.get(Device, args.id) is not None:
                print(f"gridflow: device {args.id!r} exists", file=sys.stderr)
                return 2
            session.add(Device(id=args.id, name=args.name or args.id, created_at=now))
            await session.flush()
            key_id, secret = add_key(session, args.id, settings.device_master_key(), now)
        _print_key(args.id, key_id, secret)
        return 0

    return asyncio.run(run())


def cmd_device_rotate(args: argparse.Namespace) -> int:
    from app.devices.keys import add_key
    from app.models import Device

    settings = _settings()

    async def run() -> int:
        now = datetime.now(UTC)
        async with _database(settings) as db, db.transaction() as uow:
            session = uow.session
            device = await session.get(Device, args.id)
            if device is None or device.revoked_at is not None:
                print(f"gridflow: no active device {args.id!r}", file=sys.stderr)
                return 2
            key_id, secret = add_key(session, args.id, settings.device_master_key(), now)
        _print_key(args.id, key_id, secret)
        print(
            "gridflow: the device's older keys still work until `gridflow device revoke "
            "--key KEY_ID`",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(run())


def cmd_device_revoke(args: argparse.Namespace) -> int:
    from app.models import Device, DeviceKey

    async def run() -> int:
        now = datetime.now(UTC)
        async with _database(_settings()) as db, db.transaction() as uow:
            session = uow.session
            row: Device | DeviceKey | None = (
                await session.get(DeviceKey, args.key) if args.key else None
            ) or (await session.get(Device, args.id) if args.id else None)
            if row is None:
                print("gridflow: no such device or key", file=sys.stderr)
                return 2
            row.revoked_at = row.revoked_at or now
        print(f"gridflow: revoked {args.key or args.id}")
        return 0

    return asyncio.run(run())


def cmd_device_list(_: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.devices.keys import device_keys
    from app.models import Device

    async def run() -> None:
        async with _database(_settings()) as db, db.reader() as session:
            for d in await session.scalars(select(Device).order_by(Device.id)):
                state = "revoked" if d.revoked_at else "active"
                keys = await device_keys(session, d.id)
                live = [k.id for k in keys if k.revoked_at is None]
                print(f"{d.id}\t{state}\t{d.name}\tkeys: {', '.join(live) or 'none'}")

    asyncio.run(run())
    return 0


_UNREADABLE = object()


def _read_json(path: Path) -> object:
    """A JSON file's content, or _UNREADABLE after saying why on standard error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"gridflow: cannot read {path}: {exc}", file=sys.stderr)
        return _UNREADABLE


def cmd_grids_import(args: argparse.Namespace) -> int:
    from app.gridsets.store import InvalidGridSet, import_grid_set, import_rules

    path = Path(args.file)
    collection = _read_json(path)
    if collection is _UNREADABLE:
        return 2
    settings = _settings()
    rules = import_rules(settings.geo, allow_gaps=args.allow_gaps)

    async def run() -> int:
        async with _database(settings) as db:
            try:
                done = await import_grid_set(
                    db, None, collection, rules, source=path.name, now=datetime.now(UTC)
                )
            except InvalidGridSet as exc:
                print(f"gridflow: {path}: {exc.detail}", file=sys.stderr)
                for problem in exc.extra["problems"]:
                    print(f"  - {problem['kind']}: {problem['message']}", file=sys.stderr)
                return 2
        for warning in done.report.warnings:
            print(f"gridflow: warning: {warning.message}", file=sys.stderr)
        body = done.to_dict()
        print(
            f"gridflow: imported {body['grids']} grids ({body['units']} unit grids) as version "
            f"{done.version}; running servers swap it in within "
            f"{settings.geo.reload_interval_s:g} s"
        )
        return 0

    return asyncio.run(run())


def cmd_policies_load(args: argparse.Namespace) -> int:
    from app.policies import document as policies

    path = Path(args.file)
    raw = _read_json(path)
    if raw is _UNREADABLE:
        return 2

    async def run() -> int:
        async with _database(_settings()) as db:
            try:
                async with db.transaction() as uow:
                    session = uow.session
                    doc = await policies.validated(session, raw)
                    stored = await policies.apply(session, doc)
            except policies.InvalidPolicies as exc:
                print(f"gridflow: {path}: {exc.detail}", file=sys.stderr)
                for problem in exc.extra["problems"]:
                    print(f"  - {problem['at']}: {problem['message']}", file=sys.stderr)
                return 2
        print(
            f"gridflow: loaded {stored} policies, {len(doc.categories)} categories and "
            f"{len(doc.departments)} departments from {path}; new clocks use them at once"
        )
        return 0

    return asyncio.run(run())


def cmd_policies_dump(args: argparse.Namespace) -> int:
    from app.policies import document as policies

    async def run() -> str:
        async with _database(_settings()) as db, db.reader() as session:
            doc = await policies.current(session)
        return json.dumps(doc.model_dump(mode="json"), ensure_ascii=False, indent=2)

    print(asyncio.run(run()))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from app.cases.audit import describe, verify

    settings = _settings()

    async def run() -> int:
        async with _database(settings) as db, db.reader() as session:
            result = await verify(session, settings.audit_key())
        problems = result.problems
        if args.json:
            print(json.dumps(describe(result), ensure_ascii=False, indent=2))
        else:
            for problem in problems:
                print(f"{problem.kind}: {problem.message}")
            verdict = "intact" if not problems else f"{len(problems)} problem(s)"
            print(f"gridflow: {result.cases} cases, {result.events} events checked: {verdict}")
        return 1 if problems else 0

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return asyncio.run(
        run_demo(_settings(), base_url=args.url, cases=args.cases, timeout_s=args.timeout)
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API with the embedded engine")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    api = sub.add_parser("api", help="run the HTTP API only (production; engine elsewhere)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off by default: a proxy usually does)",
    )
    api.set_defaults(func=cmd_api)

    sub.add_parser(
        "dispatcher", help="run the engine: intake consumer, outbox relay, SLA clock"
    ).set_defaults(func=cmd_dispatcher)

    kafka = sub.add_parser("kafka", help="Apache Kafka").add_subparsers(
        dest="action", required=True
    )
    kafka.add_parser(
        "init",
        help="create the topics (partitions and replication from "
        "GRIDFLOW_KAFKA__PARTITIONS / __REPLICATION_FACTOR)",
    ).set_defaults(func=cmd_kafka_init)

    token = sub.add_parser("token", help="bearer tokens").add_subparsers(
        dest="action", required=True
    )
    issue = token.add_parser("issue", help="print a signed bearer token")
    issue.add_argument("--role", required=True, choices=[r.value for r in Role])
    issue.add_argument(
        "--subject",
        required=True,
        help="resident id, worker id (as the API shows it), or operator id",
    )
    issue.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    issue.set_defaults(func=cmd_token)

    device = sub.add_parser("device", help="sensor devices").add_subparsers(
        dest="action", required=True
    )
    create = device.add_parser(
        "create", help="register a device; prints its key id and secret once"
    )
    create.add_argument("--id", required=True)
    create.add_argument("--name", default=None)
    create.set_defaults(func=cmd_device_create)
    rotate = device.add_parser("rotate", help="a new signing key (printed once)")
    rotate.add_argument("--id", required=True)
    rotate.set_defaults(func=cmd_device_rotate)
    revoke = device.add_parser("revoke", help="revoke one key, or a whole device")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="a key id")
    which.add_argument("--id", help="a device id: all of its keys")
    revoke.set_defaults(func=cmd_device_revoke)
    device.add_parser("list", help="list devices and their live key ids").set_defaults(
        func=cmd_device_list
    )

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    grids = sub.add_parser("grids", help="grid sets").add_subparsers(dest="action", required=True)
    imp = grids.add_parser("import", help="import a GeoJSON FeatureCollection as a new version")
    imp.add_argument("file")
    imp.add_argument(
        "--allow-gaps", action="store_true", help="accept gaps inside the service area (warned)"
    )
    imp.set_defaults(func=cmd_grids_import)

    pol = sub.add_parser("policies", help="SLA policies (docs/POLICIES.md)").add_subparsers(
        dest="action", required=True
    )
    load = pol.add_parser("load", help="validate a policy document (JSON) and store it")
    load.add_argument("file")
    load.set_defaults(func=cmd_policies_load)
    pol.add_parser("dump", help="print the stored policy document").set_defaults(
        func=cmd_policies_dump
    )

    audit = sub.add_parser("audit", help="the tamper-evident case history").add_subparsers(
        dest="action", required=True
    )
    check = audit.add_parser("verify", help="check every case's chain; exit 1 on any problem")
    check.add_argument("--json", action="store_true", help="the report as JSON")
    check.set_defaults(func=cmd_audit_verify)

    demo = sub.add_parser("demo", help="drive simulated residents, sensors and workers")
    demo.add_argument("--url", default="http://127.0.0.1:8000")
    demo.add_argument("--cases", type=int, default=8, help="resident reports to send")
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after (seconds)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"gridflow: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
