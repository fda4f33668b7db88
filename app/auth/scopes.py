"""Authority by level (分级分权): the part of the city an operator's or admin's token reaches.

A scope is one of

- `district:330106`, `street:330106001`, `community:330106001001`: an area, named by the
  CJ/T 213 code prefix of its unit grids (6, 9 and 12 digits). A case or case event is inside
  when its unit grid's code starts with the prefix, whichever queue works it (the area answers
  for what happens on its ground); a worker is inside when based there and not a department's
  (a department's workers are that department's to manage, wherever they are based).
- `department:roads`: a department's queue. Its cases (`cases.department`) and its workers,
  wherever they are.

A token without a scope reaches the whole city. A boundary is a boundary: a case one metre
across it belongs to the neighbour alone (cases record their unit grid when they open and keep
it), and nothing is visible read-only across it.

This module is the one place a scope becomes a filter: the SQL predicates on cases, case events
and workers, and the same tests on a loaded row or a live event. Read models, the feed, the
figures, photos and every operator or admin action ask it; nothing else spells a scope's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, and_
from sqlalchemy.orm import InstrumentedAttribute

from app.models import Case, CaseEvent, Worker
from app.platform.errors import Forbidden

CITY = "city"  # the claim's value for a city-wide token, where the claim is required
SCOPE_CLAIM = "gridflow_scope"  # the claim of gridflow's own tokens (the provider's: settings)


class ScopeKind(StrEnum):
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    DEPARTMENT = "department"


AREA_DIGITS = {ScopeKind.DISTRICT: 6, ScopeKind.STREET: 9, ScopeKind.COMMUNITY: 12}
DEPARTMENT_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # as the policy document spells them


class InvalidScope(ValueError):
    """A scope that cannot be read: an unknown kind, or a code of the wrong shape."""


class OutsideScope(Forbidden):
    """A filter naming an area or department the caller's scope does not reach."""

    code = "outside_scope"


UNIT_DIGITS = 15  # the longest unit grid code (CJ/T 213: 14 or 15 digits)


def under_prefix(column: InstrumentedAttribute[str], prefix: str) -> ColumnElement[bool]:
    """`column` starts with the digit prefix `prefix`, spelt so an index can serve it.

    `LIKE 'p%'` alone uses a PostgreSQL btree index only under the C collation (or a
    pattern_ops index). Grid codes are digits, and digit strings sort the same in every
    collation, so every code under the prefix lies in [prefix, prefix + 9…9] and the range
    narrows the scan; the LIKE keeps the answer exact whatever else the column holds."""
    like = column.startswith(prefix, autoescape=True)
    if not (prefix.isascii() and prefix.isdigit()) or len(prefix) >= UNIT_DIGITS:
        return like
    upper = prefix + "9" * (UNIT_DIGITS - len(prefix))
    return and_(column >= prefix, column <= upper, like)


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    code: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.code}"

    @property
    def is_area(self) -> bool:
        return self.kind is not ScopeKind.DEPARTMENT

    # --- loaded rows and live events ---------------------------------------------------------
    def covers(self, grid_code: str | None, department: str | None) -> bool:
        """Whether a case (or its event) of this unit grid and queue is inside."""
        if self.is_area:
            return grid_code is not None and grid_code.startswith(self.code)
        return department == self.code

    def covers_case(self, case: Case) -> bool:
        return self.covers(case.grid_code, case.department)

    def covers_worker(self, grid_code: str | None, department: str | None) -> bool:
        if self.is_area:
            return department is None and grid_code is not None and grid_code.startswith(self.code)
        return department == self.code

    # --- SQL ---------------------------------------------------------------------------------
    def cases(self) -> ColumnElement[bool]:
        """The predicate on `cases` rows inside the scope."""
        if self.is_area:
            return under_prefix(Case.grid_code, self.code)
        return Case.department == self.code

    def events(self) -> ColumnElement[bool]:
        """The predicate on `case_events` rows (which carry their case's grid and queue)."""
        if self.is_area:
            return under_prefix(CaseEvent.grid_code, self.code)
        return CaseEvent.department == self.code

    def workers(self) -> ColumnElement[bool]:
        if self.is_area:
            return and_(
                Worker.department.is_(None),
                under_prefix(Worker.grid_code, self.code),
            )
        return Worker.department == self.code

    # --- what a scoped caller may ask for ----------------------------------------------------
    def check_area(self, prefix: str | None) -> None:
        """A grid, community, street or district filter: refused when it lies wholly outside
        an area scope. A wider one (the city's prefix) is narrowed to the scope by the query."""
        if (
            prefix
            and self.is_area
            and not (prefix.startswith(self.code) or self.code.startswith(prefix))
        ):
            raise OutsideScope(f"{prefix} is outside this token's scope ({self})", scope=str(self))

    def check_case_filters(self, *, grid: str | None, department: str | None) -> None:
        self.check_area(grid)
        if department and not self.is_area and department != self.code:
            raise OutsideScope(
                f"department {department} is outside this token's scope ({self})", scope=str(self)
            )

    def check_worker_filters(self, *, grid: str | None, department: str | None) -> None:
        # an area's admin manages its grid workers, never a department's
        if department and (self.is_area or department != self.code):
            raise OutsideScope(
                f"department {department}'s workers are outside this token's scope ({self})",
                scope=str(self),
            )
        self.check_area(grid)


def parse_scope(value: object) -> Scope:
    """`kind:code` read and checked, or InvalidScope saying what is wrong."""
    if not isinstance(value, str):
        raise InvalidScope("a scope is a string such as district:330106 or department:roads")
    kind_text, sep, code = value.partition(":")
    if not sep:
        raise InvalidScope(f"{value!r} is not kind:code (e.g. street:330106001)")
    try:
        kind = ScopeKind(kind_text)
    except ValueError as exc:
        known = ", ".join(k.value for k in ScopeKind)
        raise InvalidScope(f"unknown scope kind {kind_text!r}: one of {known}") from exc
    if kind is ScopeKind.DEPARTMENT:
        if not DEPARTMENT_CODE.fullmatch(code):
            raise InvalidScope(f"{code!r} is not a department code (lowercase, e.g. roads)")
    elif not (code.isascii() and code.isdigit() and len(code) == AREA_DIGITS[kind]):
        raise InvalidScope(f"a {kind.value} code is {AREA_DIGITS[kind]} digits, not {code!r}")
    return Scope(kind, code)


def case_reach(scope: Scope | None, *, grid: str | None) -> ColumnElement[bool] | None:
    """The predicate on cases of a grid-prefix filter inside `scope` (None: no condition at
    all); OutsideScope for a filter wholly outside it."""
    where: ColumnElement[bool] | None = None
    if grid:
        where = under_prefix(Case.grid_code, grid)
    if scope is not None:
        scope.check_area(grid)
        where = scope.cases() if where is None else and_(where, scope.cases())
    return where
