"""Checking checkpoints (app/cases/checkpoints.py), listing and exporting them.

`verify_checkpoints` checks every stored checkpoint's signature and its link to the one before
(none may be missing or replaced), reports the faults each one recorded against its
predecessor, and checks the newest one's leaves against today's database: a case gone is
"vanished", a case whose history no longer holds the head it had then is "rolled back". Cases
opened and events appended since are growth, not faults.

`export` writes a checkpoint as a document to keep outside gridflow (a notary, a ledger, a
mail archive): its statement, signature and public key, its leaves if asked.
`verify_anchor` checks such a document later: its signature under its own public key (and that
it is this installation's), that the database still holds the very same checkpoint, and, from
its leaves (the document's own, or the stored ones), that every case it names is still there
with the history it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from sqlalchemy import select

from app.cases.checkpoints import (
    FORMAT,
    LEAVES_DAMAGED,
    ROLLED_BACK,
    VANISHED,
    CheckpointKey,
    Fault,
    Leaf,
    MerkleTree,
    canonical,
    compare,
    current_leaves,
    describe_fault,
    digest,
    key_id,
    leaves_from,
    merkle_root,
    newest,
    signature_holds,
    statement,
    stored_leaves,
)
from app.models import AuditCheckpoint, AuditCheckpointLeaves
from app.platform.db import Database
from geo import Progress, no_progress

EXPORT_FORMAT = "gridflow-checkpoint-export/1"


@dataclass(frozen=True)
class CheckpointProblem:
    kind: str  # vanished, rolled_back, checkpoint_signature, checkpoint_link, checkpoint_leaves,
    # anchor_signature, anchor_key, anchor_gone, anchor_mismatch, anchor_leaves
    message: str
    checkpoint: int | None
    case_id: str | None = None
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "checkpoint": self.checkpoint,
            "case_id": self.case_id,
            "seq": self.seq,
            "event_id": None,
        }


@dataclass
class CheckpointReport:
    checkpoints: int = 0
    newest: int | None = None
    cases_checked: int = 0  # the leaves compared with today's database
    problems: list[CheckpointProblem] = field(default_factory=list)


def _fault_problem(fault: Fault | dict[str, Any], since: str, checkpoint: int) -> CheckpointProblem:
    data = fault.as_dict() if isinstance(fault, Fault) else fault
    return CheckpointProblem(
        data["kind"], describe_fault(data, since), checkpoint, data.get("case_id"), data.get("seq")
    )


async def verify_checkpoints(
    db: Database, key: CheckpointKey, progress: Progress = no_progress
) -> CheckpointReport:
    report = CheckpointReport()
    async with db.reader() as session:
        rows = list(await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))
    report.checkpoints = len(rows)
    before: AuditCheckpoint | None = None
    for cp in rows:
        report.problems += _check_one(key, cp, before)
        before = cp
    if before is not None:
        report.newest = before.id
        report.cases_checked, problems = await _against_today(db, before, progress)
        report.problems += problems
    return report


def _check_one(
    key: CheckpointKey, cp: AuditCheckpoint, before: AuditCheckpoint | None
) -> list[CheckpointProblem]:
    found: list[CheckpointProblem] = []
    name = f"checkpoint {cp.id}"
    if cp.key_id != key.key_id or not signature_holds(
        key.public, cp.signature, canonical(statement(cp))
    ):
        found.append(
            CheckpointProblem(
                "checkpoint_signature",
                f"{name}: its signature does not hold under this installation's key: "
                "its content was changed, or it was not signed here",
                cp.id,
            )
        )
    if before is None:
        if cp.id != 1 or cp.prev_digest is not None:
            found.append(
                CheckpointProblem(
                    "checkpoint_link", f"{name}: the checkpoints before it are gone", cp.id
                )
            )
    elif cp.id != before.id + 1:
        found.append(
            CheckpointProblem(
                "checkpoint_link",
                f"checkpoints {before.id + 1} to {cp.id - 1} are gone",
                cp.id,
            )
        )
    elif cp.prev_digest != digest(statement(before)):
        found.append(
            CheckpointProblem(
                "checkpoint_link",
                f"{name} does not follow checkpoint {before.id}: one of them was replaced",
                cp.id,
            )
        )
    since = f"checkpoint {cp.id - 1}"
    for fault in cp.faults:
        problem = _fault_problem(fault, since, cp.id)
        found.append(
            CheckpointProblem(
                problem.kind,
                f"{problem.message} (found by {name}, taken {cp.taken_at.isoformat()})",
                cp.id,
                problem.case_id,
                problem.seq,
            )
        )
    listed = sum(1 for f in cp.faults if f.get("kind") != LEAVES_DAMAGED)
    if cp.vanished + cp.rolled_back > listed:
        found.append(
            CheckpointProblem(
                VANISHED if cp.vanished else ROLLED_BACK,
                f"{name}: {cp.vanished} vanished and {cp.rolled_back} rolled back in all, "
                f"{cp.vanished + cp.rolled_back - listed} more than listed",
                cp.id,
            )
        )
    return found


async def _against_today(
    db: Database,
    cp: AuditCheckpoint,
    progress: Progress,
    leaves: list[Leaf] | None = None,
    name: str | None = None,
) -> tuple[int, list[CheckpointProblem]]:
    """Compare a checkpoint's leaves (stored, or given) with today's cases."""
    name = name or f"checkpoint {cp.id}"
    tree, damage = MerkleTree(), list[str]()
    seen = [0]

    def tick(_: Leaf) -> None:
        seen[0] += 1
        if seen[0] % 4096 == 0:
            progress(f"checking {name}", seen[0], cp.cases)

    async with db.reader() as reading, db.reader() as side:
        old = (
            leaves_from(leaves) if leaves is not None else stored_leaves(side, cp.id, tree, damage)
        )
        faults = await compare(old, current_leaves(reading), side, on_new=tick)
    progress(f"checking {name}", seen[0], max(seen[0], 1))
    found = [_fault_problem(f, name, cp.id) for f in faults]
    if leaves is None:
        if cp.cases and not tree.count and not damage:
            damage.append("its leaves are gone")
        elif tree.count != cp.cases or tree.root() != cp.root:
            damage.append("its stored leaves do not make its signed root")
        found += [CheckpointProblem(LEAVES_DAMAGED, f"{name}: {d}", cp.id) for d in damage]
    return (len(leaves) if leaves is not None else tree.count), found


async def export(
    db: Database, key: CheckpointKey, checkpoint_id: int | None, *, with_leaves: bool
) -> dict[str, Any]:
    """The document to keep outside gridflow; LookupError if there is no such checkpoint (or
    its leaves, when asked for, are no longer kept)."""
    async with db.reader() as session:
        cp = (
            await session.get(AuditCheckpoint, checkpoint_id)
            if checkpoint_id is not None
            else await newest(session)
        )
        if cp is None:
            raise LookupError(
                f"no checkpoint {checkpoint_id}" if checkpoint_id else "no checkpoint yet"
            )
        st = statement(cp)
        doc: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "statement": st,
            "digest": digest(st),
            "signature": cp.signature,
            "public_key": key.public.hex(),
        }
        if with_leaves:
            tree, damage = MerkleTree(), list[str]()
            doc["leaves"] = [
                leaf.as_list() async for leaf in stored_leaves(session, cp.id, tree, damage)
            ]
            if tree.count != cp.cases or damage:
                raise LookupError(f"the leaves of checkpoint {cp.id} are no longer kept whole")
    return doc


def parse_export(document: Any) -> tuple[dict[str, Any], str, bytes, list[Leaf] | None]:
    """The statement, signature, public key and leaves of an exported document; ValueError
    if it is not one."""
    try:
        if document.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not a checkpoint export ({EXPORT_FORMAT})")
        st = document["statement"]
        if not isinstance(st, dict) or st.get("format") != FORMAT or not isinstance(st["id"], int):
            raise ValueError("its statement is not a checkpoint's")
        signature = str(document["signature"])
        public = bytes.fromhex(document["public_key"])
        raw = document.get("leaves")
        leaves = (
            None if raw is None else [Leaf(str(c), int(s), bytes.fromhex(h)) for c, s, h in raw]
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a checkpoint export: {exc}") from exc
    if leaves is not None:
        if any(len(leaf.head) != 32 for leaf in leaves):
            raise ValueError("a leaf's head is not 32 bytes")
        if any(a.case_id >= b.case_id for a, b in pairwise(leaves)):
            raise ValueError("its leaves are not in case-id order")
    return st, signature, public, leaves


async def verify_anchor(
    db: Database, key: CheckpointKey, document: Any, progress: Progress = no_progress
) -> tuple[int, list[CheckpointProblem]]:
    """Check an exported checkpoint against the database; ValueError if `document` is not one.
    Returns the cases compared with today's and the problems."""
    st, signature, public, leaves = parse_export(document)
    number = int(st["id"])
    name = f"the exported checkpoint {number}"
    found: list[CheckpointProblem] = []

    def problem(kind: str, message: str) -> None:
        found.append(CheckpointProblem(kind, f"{name}: {message}", number))

    if key_id(public) != st.get("key_id") or not signature_holds(public, signature, canonical(st)):
        problem("anchor_signature", "its signature does not hold: the document was changed")
    if public != key.public:
        problem("anchor_key", "it was signed under another key than this installation's")
    async with db.reader() as session:
        stored = await session.get(AuditCheckpoint, number)
        kept = await session.scalar(
            select(AuditCheckpointLeaves.checkpoint_id)
            .where(AuditCheckpointLeaves.checkpoint_id == number)
            .limit(1)
        )
    if stored is None:
        problem("anchor_gone", "the database holds no checkpoint of that number")
    elif digest(statement(stored)) != digest(st):
        problem("anchor_mismatch", "the database's checkpoint of that number is another one")
    if leaves is not None:
        if len(leaves) != st.get("cases") or merkle_root(leaves) != st.get("root"):
            problem("anchor_leaves", "its leaves do not make its root")
            return 0, found
        probe = _statement_row(st)
    elif stored is not None and kept is not None and not found:
        probe = stored
    else:
        return 0, found  # nothing to compare cases with: the chain of checkpoints speaks
    checked, problems = await _against_today(db, probe, progress, leaves, name)
    return checked, found + problems


def _statement_row(st: dict[str, Any]) -> AuditCheckpoint:
    """A transient row carrying an exported statement's numbers (never added to a session)."""
    return AuditCheckpoint(id=int(st["id"]), cases=int(st["cases"]), root=str(st["root"]))


async def list_checkpoints(db: Database) -> list[dict[str, Any]]:
    async with db.reader() as session:
        rows = list(await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))
        kept = set(await session.scalars(select(AuditCheckpointLeaves.checkpoint_id).distinct()))
    return [summary(cp) | {"leaves_kept": cp.id in kept or cp.cases == 0} for cp in rows]


def summary(cp: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as the command line and scripts see it."""
    return {
        "id": cp.id,
        "taken_at": cp.taken_at.isoformat(),
        "cases": cp.cases,
        "events": cp.events,
        "root": cp.root,
        "vanished": cp.vanished,
        "rolled_back": cp.rolled_back,
    }
