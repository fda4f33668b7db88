"""`gridflow kafka`: the topics."""

from __future__ import annotations

import typer

from app.cli.common import JSON_OPTION, arun, print_json, settings


def init(as_json: bool = JSON_OPTION) -> None:
    """Create the topics that do not exist yet.

    Partitions and replication come from GRIDFLOW_KAFKA__PARTITIONS and
    GRIDFLOW_KAFKA__REPLICATION_FACTOR.

    Example: GRIDFLOW_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 gridflow kafka init --json
    """
    from app.platform.kafka_bus import ensure_topics, physical
    from app.platform.topics import ALL

    s = settings()
    created = arun(ensure_topics(s.kafka))
    rows = [
        {
            "topic": name,
            "state": "created" if name in created else "exists",
            "partitions": s.kafka.partitions,
            "replication": s.kafka.replication_factor,
        }
        for name in (physical(s.kafka, t) for t in ALL)
    ]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        print(
            f"{r['topic']}\t{r['state']}\tpartitions={r['partitions']}"
            f"\treplication={r['replication']}"
        )


def group() -> typer.Typer:
    """The command group, built when the command line is read."""
    commands = typer.Typer(help="Apache Kafka topics.", no_args_is_help=True)
    commands.command("init")(init)
    return commands
