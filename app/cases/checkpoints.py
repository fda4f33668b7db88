"""Signed checkpoints of every case's chain head: what a whole case's deletion leaves behind.

The chain of one case (app/cases/audit.py) shows an event edited, inserted or removed inside
it, but not a case deleted with all its rows, nor a case cut back to an earlier event with its
head moved back to match: neither needs the audit key. A checkpoint records one **leaf** per
case, `(case id, seq of its last event, its head hash)`, and signs the Merkle root of them all:

- leaves in case-id order (Unicode code points, which is UTF-8 byte order: `COLLATE "C"` on
  PostgreSQL, SQLite's BINARY); a leaf's hash is SHA-256(0x00 ‖ len(id) as 2 bytes ‖ id in
  UTF-8 ‖ seq as 4 bytes ‖ the head's 32 bytes), big-endian, an absent head as 32 zero bytes;
- the tree is RFC 6962's (Certificate Transparency): a node is SHA-256(0x01 ‖ left ‖ right),
  the left subtree of n leaves holds the largest power of two below n, no leaves is
  SHA-256 of nothing; computed streaming, in O(log n) memory;
- the **statement** signed is canonical JSON (sorted keys, no spaces, UTF-8) of the format, the
  checkpoint's number, time, counts, root, the digest (SHA-256 of the statement) of the
  checkpoint before it, and the faults found against that one; so the checkpoints form a chain
  of their own, and a copy of the newest one kept outside gridflow vouches for all before it;
- the signature is Ed25519 (RFC 8032) under a key derived from the audit key by HMAC-SHA256
  (`gridflow audit checkpoints` as the label). Ed25519 rather than an HMAC: whoever holds an
  exported checkpoint and the public key can check it, and cannot sign another one; an HMAC
  can only be checked by someone who could also forge it. Its signatures are deterministic.

Leaves are stored in chunks of CHUNK, packed (`pack`) and zlib-compressed: about 62 bytes a
case of a UUID (the hashes do not compress), so 62 MB for a million cases; only the newest
`audit.checkpoint_keep_leaves` checkpoints keep theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditCheckpoint, AuditCheckpointLeaves, Case, CaseEvent

FORMAT = "gridflow-checkpoint/1"
CHUNK = 4096  # leaves per stored chunk
LOOKUP_BATCH = 500  # (case, seq) pairs looked up in one query
MAX_FAULTS = 1000  # listed in one checkpoint; the counts cover every one
NO_HEAD = bytes(32)
KEY_LABEL = b"gridflow audit checkpoints"

VANISHED = "vanished"  # a case in the checkpoint is gone
ROLLED_BACK = "rolled_back"  # a case's history no longer holds the head the checkpoint saw
LEAVES_DAMAGED = "checkpoint_leaves"  # stored leaves that do not make the signed root

_LEAF = struct.Struct(">I32s")  # seq, head; after a 2-byte length and the id


class Leaf(NamedTuple):
    case_id: str
    seq: int
    head: bytes  # 32 bytes

    def encoded(self) -> bytes:
        """The leaf's bytes: what it is hashed and packed as."""
        raw = self.case_id.encode()
        return len(raw).to_bytes(2, "big") + raw + _LEAF.pack(self.seq, self.head)

    def hash(self) -> bytes:
        return hashlib.sha256(b"\x00" + self.encoded()).digest()

    def as_list(self) -> list[Any]:
        return [self.case_id, self.seq, self.head.hex()]

    @classmethod
    def of(cls, case_id: str, seq: int, head_hex: str | None) -> Leaf:
        return cls(case_id, seq, bytes.fromhex(head_hex) if head_hex else NO_HEAD)


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """The RFC 6962 root of leaves added in order, keeping one hash per power of two."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (leaves, hash), sizes strictly falling
        self.count = 0

    def add(self, leaf: Leaf) -> None:
        self.add_hash(leaf.hash())

    def add_hash(self, digest: bytes) -> None:
        """Add a leaf by its hash (SHA-256 of 0x00 and its encoded bytes)."""
        size = 1
        stack = self._stack
        while stack and stack[-1][0] == size:
            digest = _node(stack.pop()[1], digest)
            size *= 2
        stack.append((size, digest))
        self.count += 1

    def root(self) -> str:
        if not self._stack:
            return hashlib.sha256(b"").hexdigest()
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = _node(left, digest)
        return digest.hex()


def merkle_root(leaves: Iterable[Leaf]) -> str:
    tree = MerkleTree()
    for leaf in leaves:
        tree.add(leaf)
    return tree.root()


def pack(leaves: Iterable[Leaf]) -> bytes:
    return pack_encoded([leaf.encoded() for leaf in leaves])


def pack_encoded(encoded: list[bytes]) -> bytes:
    return zlib.compress(b"".join(encoded), 1)  # the hashes do not compress: be quick


def unpack(data: bytes) -> list[Leaf]:
    """The leaves of one chunk; ValueError if it is not one."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise ValueError(f"not a packed chunk: {exc}") from exc
    leaves: list[Leaf] = []
    at = 0
    while at < len(raw):
        n = int.from_bytes(raw[at : at + 2], "big")
        end = at + 2 + n + _LEAF.size
        if end > len(raw):
            raise ValueError("a chunk ends inside a leaf")
        seq, head = _LEAF.unpack_from(raw, at + 2 + n)
        leaves.append(Leaf(raw[at + 2 : at + 2 + n].decode(), seq, head))
        at = end
    return leaves


class CheckpointKey:
    """The Ed25519 key checkpoints are signed with, derived from the audit key."""

    def __init__(self, audit_key: bytes) -> None:
        seed = hmac.new(audit_key, KEY_LABEL, hashlib.sha256).digest()
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._private.public_key().public_bytes_raw()
        self.key_id = key_id(self.public)

    def sign(self, message: bytes) -> str:
        return self._private.sign(message).hex()


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def signature_holds(public: bytes, signature_hex: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def statement(cp: AuditCheckpoint) -> dict[str, Any]:
    """What a checkpoint's signature covers."""
    return {
        "format": FORMAT,
        "id": cp.id,
        "taken_at": cp.taken_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "cases": cp.cases,
        "events": cp.events,
        "root": cp.root,
        "prev": cp.prev_digest,
        "vanished": cp.vanished,
        "rolled_back": cp.rolled_back,
        "faults": cp.faults,
        "key_id": cp.key_id,
    }


def canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def digest(value: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def _by_id(session: AsyncSession) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return Case.id.collate("C")
    return Case.id  # SQLite compares text as bytes


async def current_leaves(session: AsyncSession) -> AsyncIterator[Leaf]:
    """Every case's leaf now, in case-id order: one query, streamed (so one snapshot of the
    whole table on both databases)."""
    query = select(Case.id, Case.seq, Case.head_hash).order_by(_by_id(session))
    # Rows come 1,024 at a time: the work between two fetches holds the event loop briefly.
    result = await session.stream(query.execution_options(yield_per=1024))
    last = ""
    async for rows in result.partitions():
        for case_id, seq, head in rows:
            if case_id <= last:
                raise RuntimeError("the database does not sort case ids in code-point order")
            last = case_id
            yield Leaf.of(case_id, seq, head)


async def stored_leaves(
    session: AsyncSession, checkpoint_id: int, tree: MerkleTree, damage: list[str]
) -> AsyncIterator[Leaf]:
    """A checkpoint's stored leaves, chunk by chunk, each added to `tree` on the way so the
    caller can compare the root with the signed one. Leaves out of order or a chunk that
    cannot be read end the stream and say so in `damage`."""
    chunk, last = 0, ""
    while True:
        row = await session.get(AuditCheckpointLeaves, (checkpoint_id, chunk))
        if row is None:
            return
        try:
            leaves = unpack(row.data)
        except ValueError as exc:
            damage.append(f"chunk {chunk}: {exc}")
            return
        if len(leaves) != row.count:
            damage.append(f"chunk {chunk} holds {len(leaves)} leaves, not {row.count}")
        for leaf in leaves:
            if leaf.case_id <= last:
                damage.append(f"chunk {chunk}: leaves out of order")
                return
            last = leaf.case_id
            tree.add(leaf)
            yield leaf
        chunk += 1


async def leaves_from(items: Iterable[Leaf]) -> AsyncIterator[Leaf]:
    for item in items:
        yield item


@dataclass(frozen=True)
class Fault:
    case_id: str
    kind: str  # VANISHED or ROLLED_BACK
    seq: int  # the case's last event when the checkpoint was taken
    now_seq: int | None  # and now (None: gone)

    def as_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "kind": self.kind, "seq": self.seq, "now": self.now_seq}


async def compare(
    old: AsyncIterator[Leaf],
    new: AsyncIterator[Leaf],
    side: AsyncSession,
    on_new: Callable[[Leaf], None] | None = None,
) -> list[Fault]:
    """The cases of `old` (a checkpoint's leaves) that `new` (a later state, same order) lost
    or rolled back. Cases only in `new` are growth; a case that moved on must still hold, at
    the old seq, the old head (looked up on `side`). Every new leaf passes through `on_new`."""
    faults: list[Fault] = []
    moved: list[tuple[Leaf, int]] = []
    o, n = await anext(old, None), await anext(new, None)
    while o is not None or n is not None:
        if n is not None and (o is None or n.case_id < o.case_id):
            if on_new is not None:
                on_new(n)
            n = await anext(new, None)
            continue
        assert o is not None
        if n is None or o.case_id < n.case_id:
            faults.append(Fault(o.case_id, VANISHED, o.seq, None))
            o = await anext(old, None)
            continue
        if on_new is not None:
            on_new(n)
        if n.seq < o.seq or (n.seq == o.seq and n.head != o.head):
            faults.append(Fault(o.case_id, ROLLED_BACK, o.seq, n.seq))
        elif n.seq > o.seq and o.seq > 0:
            moved.append((o, n.seq))
            if len(moved) >= LOOKUP_BATCH:
                faults += await _still_held(side, moved)
                moved = []
        o, n = await anext(old, None), await anext(new, None)
    faults += await _still_held(side, moved)
    return faults


async def _still_held(side: AsyncSession, moved: list[tuple[Leaf, int]]) -> list[Fault]:
    """Cases that moved on since the checkpoint whose event at its seq is not its head then."""
    if not moved:
        return []
    pairs = [(leaf.case_id, leaf.seq) for leaf, _ in moved]
    rows = await side.execute(
        select(CaseEvent.case_id, CaseEvent.seq, CaseEvent.hash).where(
            tuple_(CaseEvent.case_id, CaseEvent.seq).in_(pairs)
        )
    )
    held = {(case_id, seq): head for case_id, seq, head in rows}
    faults: list[Fault] = []
    for leaf, now_seq in moved:
        head = held.get((leaf.case_id, leaf.seq))
        if head is None or Leaf.of(leaf.case_id, leaf.seq, head).head != leaf.head:
            faults.append(Fault(leaf.case_id, ROLLED_BACK, leaf.seq, now_seq))
    return faults


async def newest(session: AsyncSession) -> AuditCheckpoint | None:
    return await session.scalar(
        select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    )


def describe_fault(fault: dict[str, Any], since: str) -> str:
    """One line for a person: `since` names the checkpoint the fault is counted from."""
    case, seq, now = fault.get("case_id"), fault.get("seq"), fault.get("now")
    if fault["kind"] == VANISHED:
        return f"case {case}: gone since {since}, which saw it at event {seq}"
    if fault["kind"] == ROLLED_BACK:
        if now is not None and now < seq:
            return f"case {case}: rolled back to event {now}; {since} saw event {seq}"
        return f"case {case}: history rewritten; {since} saw another event {seq}"
    return str(fault.get("message", fault["kind"]))
