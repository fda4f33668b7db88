"""deploy/monitoring: the alert rules and the Grafana dashboard parse, and every gridflow metric
they read is one the code exposes (app/platform/metrics.py), so a rename cannot leave them
silently empty."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from app.platform.metrics import sample_names

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
METRIC = re.compile(r"\bgridflow_[a-z0-9_]+")


def unknown_metrics(expr: str) -> set[str]:
    return set(METRIC.findall(expr)) - sample_names()


def test_alert_rules_read_only_metrics_the_code_defines() -> None:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    assert set(doc) == {"groups"}
    names: list[str] = []
    for group in doc["groups"]:
        assert group["name"] and group["rules"], group
        for rule in group["rules"]:
            names.append(rule["alert"])
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert METRIC.search(rule["expr"]), rule["alert"]
            assert not unknown_metrics(rule["expr"]), (rule["alert"], unknown_metrics(rule["expr"]))
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"], rule["alert"]
    assert len(names) == len(set(names)) >= 8


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_the_dashboard_reads_only_metrics_the_code_defines() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    shown = [p for p in panels(dashboard) if p["type"] != "row"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    read: set[str] = set()
    for panel in shown:
        assert panel["datasource"]["uid"].strip("${}") in variables, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert not unknown_metrics(target["expr"]), (panel["title"], target["expr"])
            read |= set(METRIC.findall(target["expr"]))
    # every family is on the dashboard
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in sample_names()}
    assert families <= {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in read}
