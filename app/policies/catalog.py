"""The bundled departments, categories and SLA policies (seconds), loaded on first start.

Codes are stable identifiers used by the apps; names are shown in Chinese and English.
消防通道堵塞 (blocked fire lane) follows Hangzhou's practice: on site in 5 minutes, closed in 15.
Urgent classes run 24/7; the others count working time only (the settings' `sla.calendar`).
Road damage belongs to the roads department: it goes to that department's queue, and its repair
is checked on site (核查) before the case closes. An install replaces all of this with its own
document (`gridflow policies load`, `PUT /v1/admin/policies`; docs/POLICIES.md).
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE, HOUR = 60, 3600

# (clock, seconds past its due time, action): see docs/POLICIES.md
Step = tuple[str, int, str]


@dataclass(frozen=True)
class CategorySpec:
    code: str
    name_zh: str
    name_en: str
    priority: int  # 1 is the most urgent
    accept_s: int
    on_site_s: int
    close_s: int
    calendar: str = "working_hours"  # urgent classes: "24x7"
    department: str | None = None
    skill: str | None = None
    verify_s: int | None = None
    escalation: tuple[Step, ...] = ()


# The demo city's drill (演练): clocks short enough for `gridflow demo` to show warnings,
# breaches and every kind of escalation within two minutes. Seeded with the demo city only.
DRILL = CategorySpec(
    "sla_drill",
    "超时演练",
    "SLA drill (demo city)",
    3,
    30,
    30,
    60,
    "24x7",
    escalation=(
        ("on_site", 0, "notify_grid_leader"),
        ("on_site", 10, "reoffer"),
        ("close", 0, "notify_street_office"),
        ("close", 0, "raise_priority"),
    ),
)

DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("roads", "道路养护中心 Road maintenance", "道路养护中心值班长"),
)

CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "fire_lane_blocked",
        "消防通道堵塞",
        "Fire lane blocked",
        1,
        MINUTE,
        5 * MINUTE,
        15 * MINUTE,
        "24x7",
        escalation=(
            ("on_site", 0, "notify_grid_leader"),
            ("on_site", 2 * MINUTE, "reoffer"),
            ("close", 0, "notify_street_office"),
        ),
    ),
    CategorySpec(
        "garbage_overflow",
        "垃圾满溢",
        "Garbage overflow",
        3,
        10 * MINUTE,
        2 * HOUR,
        24 * HOUR,
        escalation=(("close", 0, "notify_grid_leader"), ("close", 4 * HOUR, "raise_priority")),
    ),
    CategorySpec(
        "street_vending",
        "占道经营",
        "Street vending",
        3,
        10 * MINUTE,
        HOUR,
        4 * HOUR,
        escalation=(("on_site", 0, "notify_grid_leader"), ("close", 0, "notify_street_office")),
    ),
    CategorySpec(
        "illegal_parking",
        "违章停车",
        "Illegal parking",
        2,
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        "24x7",
        escalation=(
            ("on_site", 0, "notify_grid_leader"),
            ("close", 0, "notify_street_office"),
            ("close", 30 * MINUTE, "raise_priority"),
        ),
    ),
    CategorySpec(
        "road_damage",
        "道路破损",
        "Road damage",
        2,
        15 * MINUTE,
        2 * HOUR,
        48 * HOUR,
        department="roads",
        verify_s=4 * HOUR,
        escalation=(
            ("on_site", 0, "notify_department"),
            ("close", 0, "notify_street_office"),
            ("verify", 0, "notify_department"),
        ),
    ),
    CategorySpec(
        "other",
        "其他",
        "Other",
        4,
        15 * MINUTE,
        4 * HOUR,
        72 * HOUR,
        escalation=(("close", 0, "notify_grid_leader"),),
    ),
)
