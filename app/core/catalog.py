"""The bundled categories and their SLA goals (seconds).

Codes are stable identifiers used by the apps; names are shown in Chinese and English.
消防通道堵塞 (blocked fire lane) follows Hangzhou's practice: on site in 5 minutes, closed in 15.
Urgent classes run 24/7; the others count working time only (the settings' `sla.calendar`).
"""

from __future__ import annotations

from dataclasses import dataclass


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


MINUTE, HOUR = 60, 3600

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
    ),
    CategorySpec(
        "garbage_overflow", "垃圾满溢", "Garbage overflow", 3, 10 * MINUTE, 2 * HOUR, 24 * HOUR
    ),
    CategorySpec("street_vending", "占道经营", "Street vending", 3, 10 * MINUTE, HOUR, 4 * HOUR),
    CategorySpec(
        "illegal_parking",
        "违章停车",
        "Illegal parking",
        2,
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        "24x7",
    ),
    CategorySpec("road_damage", "道路破损", "Road damage", 2, 15 * MINUTE, 2 * HOUR, 48 * HOUR),
    CategorySpec("other", "其他", "Other", 4, 15 * MINUTE, 4 * HOUR, 72 * HOUR),
)
