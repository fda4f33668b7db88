"""SLA policies as data: one validated document of departments, categories and policies.

The document is what `GET/PUT /v1/admin/policies` exchange and what `gridflow policies load`
reads from a file. `check` lists every problem at once (a path into the document and a message);
`apply` replaces the stored set in the caller's transaction. Every field is explained in
docs/POLICIES.md. Clocks already armed keep their due times; new clocks use the new policies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Category, Department, PolicyDocumentVersion, SlaPolicy
from app.platform.errors import AppError
from app.platform.uow import UnitOfWork
from app.policies.catalog import CATEGORIES, DEPARTMENTS, CategorySpec

Clock = Literal["on_site", "close", "verify"]
Action = Literal[
    "reoffer", "notify_grid_leader", "notify_street_office", "notify_department", "raise_priority"
]
Code = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")


class _Strict(BaseModel):
    # from_attributes: a document part is read from its stored row with model_validate(row)
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class DepartmentDoc(_Strict):
    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    responsible: str | None = Field(default=None, max_length=200)


class CategoryDoc(_Strict):
    code: str = Code
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    priority: int = Field(ge=1, le=5, description="1 is the most urgent")
    department: str | None = None
    skill: str | None = Field(default=None, min_length=1, max_length=64)


class StepDoc(_Strict):
    clock: Clock
    after_s: int = Field(ge=0, le=90 * 86400, description="seconds past the clock's due time")
    action: Action


class PolicyDoc(_Strict):
    category: str
    priority: int = Field(default=0, ge=0, le=5, description="0: any priority")
    calendar: Literal["24x7", "working_hours"]
    accept_s: int = Field(ge=10, le=7 * 86400)
    on_site_s: int = Field(ge=10, le=90 * 86400)
    close_s: int = Field(ge=10, le=365 * 86400)
    verify_s: int | None = Field(default=None, ge=10, le=90 * 86400)
    warn_at: float | None = Field(default=None, gt=0, lt=1)
    max_refusals: int = Field(default=3, ge=1, le=50)
    escalation: list[StepDoc] = Field(default_factory=list, max_length=20)


class PolicyDocument(_Strict):
    departments: list[DepartmentDoc] = Field(default_factory=list, max_length=500)
    categories: list[CategoryDoc] = Field(default_factory=list, max_length=500)
    policies: list[PolicyDoc] = Field(max_length=3000)


@dataclass(frozen=True)
class Problem:
    at: str  # a path into the document: "policies[2].escalation[0].clock"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"at": self.at, "message": self.message}


class InvalidPolicies(AppError):
    status, code = 422, "invalid_policies"


def _where(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(raw: Any) -> PolicyDocument:
    """The document, or InvalidPolicies listing every field that is wrong."""
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        problems = [
            Problem(_where(e["loc"]), e["msg"]).to_dict() for e in exc.errors(include_url=False)
        ]
        raise InvalidPolicies(
            f"the policy document has {len(problems)} problem(s)", problems=problems
        ) from exc


def check(doc: PolicyDocument) -> list[Problem]:
    """What makes a well-formed document unusable: unknown or repeated codes, clocks out of
    order, steps that cannot happen, categories left without a default policy."""
    problems: list[Problem] = []
    departments: set[str] = set()
    for i, d in enumerate(doc.departments):
        if d.code in departments:
            problems.append(Problem(f"departments[{i}].code", f"{d.code} appears twice"))
        departments.add(d.code)
    categories: dict[str, CategoryDoc] = {}
    listed: set[str] = set()
    for i, c in enumerate(doc.categories):
        if c.code in listed:
            problems.append(Problem(f"categories[{i}].code", f"{c.code} appears twice"))
        listed.add(c.code)
        categories[c.code] = c
        if c.department is not None and c.department not in departments:
            problems.append(Problem(f"categories[{i}].department", f"no department {c.department}"))
    seen: set[tuple[str, int]] = set()
    for i, p in enumerate(doc.policies):
        at = f"policies[{i}]"
        if p.category not in categories:
            problems.append(Problem(f"{at}.category", f"no category {p.category}"))
        if (p.category, p.priority) in seen:
            problems.append(
                Problem(at, f"a second policy for {p.category} at priority {p.priority}")
            )
        seen.add((p.category, p.priority))
        if p.on_site_s > p.close_s:
            problems.append(Problem(f"{at}.on_site_s", "the on-site goal is after the close goal"))
        category = categories.get(p.category)
        steps: set[tuple[str, int, str]] = set()
        for j, step in enumerate(p.escalation):
            where = f"{at}.escalation[{j}]"
            key = (step.clock, step.after_s, step.action)
            if key in steps:
                problems.append(Problem(where, "the same step appears twice"))
            steps.add(key)
            if step.clock == "verify" and p.verify_s is None:
                problems.append(Problem(f"{where}.clock", "no verify clock: verify_s is not set"))
            if step.action == "reoffer" and step.clock != "on_site":
                problems.append(
                    Problem(f"{where}.action", "reoffer applies to the on_site clock only")
                )
            if (
                step.action == "notify_department"
                and category is not None
                and category.department is None
            ):
                problems.append(
                    Problem(f"{where}.action", f"category {p.category} has no department")
                )
    for code in sorted(categories):
        if (code, 0) not in seen:
            problems.append(Problem("policies", f"category {code} has no priority-0 policy"))
    return problems


async def validated(session: AsyncSession, raw: Any) -> PolicyDocument:
    """Parse and check `raw` against the stored categories; InvalidPolicies on any problem.

    A stored category the document does not list keeps its attributes but still needs its
    policies: policies are replaced as a whole."""
    doc = parse(raw)
    stored = await session.scalars(select(Category))
    existing = {c.code: c for c in stored}
    # A stored category's department counts when the document does not list the category.
    listed = {c.code for c in doc.categories}
    carried = [CategoryDoc.model_validate(c) for code, c in existing.items() if code not in listed]
    stored_departments = {d.code: d for d in await session.scalars(select(Department))}
    listed_departments = {d.code for d in doc.departments}
    full = PolicyDocument(
        departments=[
            *doc.departments,
            *(
                DepartmentDoc.model_validate(d)
                for code, d in stored_departments.items()
                if code not in listed_departments
            ),
        ],
        categories=[*doc.categories, *carried],
        policies=doc.policies,
    )
    problems = check(full)
    if problems:
        raise InvalidPolicies(
            f"the policy document has {len(problems)} problem(s)",
            problems=[p.to_dict() for p in problems],
        )
    return doc


async def apply(session: AsyncSession, doc: PolicyDocument) -> int:
    """Store a checked document: departments and categories upserted, every policy replaced.
    Returns the number of policies stored."""
    for d in doc.departments:
        await session.merge(Department(**d.model_dump()))
    await session.flush()
    for c in doc.categories:
        await session.merge(Category(**c.model_dump()))
    await session.flush()
    await session.execute(delete(SlaPolicy))
    return await add_policies(session, doc)


async def add_policies(session: AsyncSession, doc: PolicyDocument) -> int:
    """Store the document's categories (when new) and policies, replacing none; the stored set
    gets the next version (so every engine's cached copy is read again)."""
    for c in doc.categories:
        if await session.get(Category, c.code) is None:
            session.add(Category(**c.model_dump()))
    await session.flush()
    for p in doc.policies:
        fields = p.model_dump()
        session.add(SlaPolicy(category_code=fields.pop("category"), **fields))
    await session.flush()
    await bump_version(session)
    return len(doc.policies)


async def current(session: AsyncSession) -> PolicyDocument:
    """The stored set as a document (what `apply` would store again unchanged)."""
    departments = await session.scalars(select(Department).order_by(Department.code))
    categories = await session.scalars(select(Category).order_by(Category.code))
    policies = await session.scalars(
        select(SlaPolicy).order_by(SlaPolicy.category_code, SlaPolicy.priority)
    )
    return PolicyDocument(
        departments=[DepartmentDoc.model_validate(d) for d in departments],
        categories=[CategoryDoc.model_validate(c) for c in categories],
        policies=[
            PolicyDoc.model_validate(
                {
                    **{f: getattr(p, f) for f in PolicyDoc.model_fields if f != "category"},
                    "category": p.category_code,
                }
            )
            for p in policies
        ],
    )


@dataclass(frozen=True)
class PolicySet:
    """One version of the stored categories and policies, read whole. Its rows are detached
    copies, shared by every transaction that reads this version: never change them."""

    version: int
    categories: dict[str, Category]
    policies: dict[tuple[str, int], SlaPolicy]

    def policy(self, category: str, priority: int) -> SlaPolicy | None:
        """The policy for a case: its category at its priority, else the category's default."""
        found = self.policies.get((category, priority)) if priority != 0 else None
        return found or self.policies.get((category, 0))

    def skill(self, category: str) -> str | None:
        """The skill whose workers are offered the category's cases first, if any."""
        found = self.categories.get(category)
        return found.skill if found is not None else None


_VERSION = select(PolicyDocumentVersion.version).where(PolicyDocumentVersion.id == 1)


async def bump_version(session: AsyncSession) -> None:
    """The stored set changed: the next version (the row lock orders concurrent changes)."""
    await session.execute(
        update(PolicyDocumentVersion)
        .where(PolicyDocumentVersion.id == 1)
        .values(version=PolicyDocumentVersion.version + 1)
        .execution_options(synchronize_session=False)
    )


async def read_policy_set(session: AsyncSession) -> PolicySet:
    version = await session.scalar(_VERSION)
    categories = {c.code: c for c in await session.scalars(select(Category))}
    policies = {(p.category_code, p.priority): p for p in await session.scalars(select(SlaPolicy))}
    return PolicySet(version or 0, categories, policies)


class PolicyBook:
    """The policy set as this process last read it. A unit of work asks the stored version
    once (one small query) and reads the whole set again only when it has changed."""

    def __init__(self) -> None:
        self._set: PolicySet | None = None

    async def current(self, session: AsyncSession) -> PolicySet:
        version = await session.scalar(_VERSION)
        if self._set is None or self._set.version != (version or 0):
            self._set = await read_policy_set(session)
        return self._set


async def policy_set(uow: UnitOfWork) -> PolicySet:
    """The policy set this unit of work sees (read at its first use)."""
    if uow.policy_set is None:
        uow.policy_set = await uow.book.current(uow.session)
    return uow.policy_set


async def policy_for(uow: UnitOfWork, category: str, priority: int) -> SlaPolicy | None:
    """The policy for a case: its category at its priority, else the category's default."""
    return (await policy_set(uow)).policy(category, priority)


async def find_policy(session: AsyncSession, category: str, priority: int) -> SlaPolicy | None:
    """`policy_for` for a read-only session, read from the tables."""
    policy = await session.get(SlaPolicy, (category, priority)) if priority != 0 else None
    return policy or await session.get(SlaPolicy, (category, 0))


def bundled(specs: Iterable[CategorySpec] = CATEGORIES) -> PolicyDocument:
    """The bundled departments, categories and policies (app/policies/catalog.py)."""
    specs = tuple(specs)
    return PolicyDocument(
        departments=[
            DepartmentDoc(code=c, name=n, responsible=r)
            for c, n, r in DEPARTMENTS
            if any(s.department == c for s in specs)
        ],
        categories=[CategoryDoc.model_validate(s) for s in specs],
        policies=[
            PolicyDoc(
                category=s.code,
                calendar=s.calendar,
                accept_s=s.accept_s,
                on_site_s=s.on_site_s,
                close_s=s.close_s,
                verify_s=s.verify_s,
                escalation=[StepDoc(clock=c, after_s=a, action=x) for c, a, x in s.escalation],
            )
            for s in specs
        ],
    )
