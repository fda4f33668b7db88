"""Policies as data: the admin API and the CLI share one validated document."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from tests.dispatch.test_escalation import policies, policy, put_policies
from tests.harness import Harness


async def test_the_bundled_document_reads_back_and_stores_unchanged(h: Harness) -> None:
    doc = await policies(h)
    assert {d["code"] for d in doc["departments"]} == {"roads"}
    road = next(c for c in doc["categories"] if c["code"] == "road_damage")
    assert road["department"] == "roads"
    fire = policy(doc, "fire_lane_blocked")
    assert fire["calendar"] == "24x7" and (fire["on_site_s"], fire["close_s"]) == (300, 900)
    assert fire["escalation"][0] == {
        "clock": "on_site",
        "after_s": 0,
        "action": "notify_grid_leader",
    }
    assert policy(doc, "road_damage")["verify_s"] == 4 * 3600
    r = await put_policies(h, doc)
    assert r.status_code == 200, r.text
    assert r.json() == doc


async def test_every_problem_is_listed_and_nothing_changes(h: Harness) -> None:
    before = await policies(h)
    doc = json.loads(json.dumps(before))
    fire = policy(doc, "fire_lane_blocked")
    fire["on_site_s"] = 2000  # after the close goal
    fire["escalation"].append({"clock": "verify", "after_s": 0, "action": "reoffer"})
    policy(doc, "other")["calendar"] = "lunar"
    doc["policies"] = [p for p in doc["policies"] if p["category"] != "street_vending"]
    doc["policies"].append({**policy(doc, "other"), "category": "no_such", "calendar": "24x7"})
    doc["categories"].append(
        {
            "code": "potholes",
            "name_zh": "坑洞",
            "name_en": "Potholes",
            "priority": 2,
            "department": "water",
        }
    )
    r = await put_policies(h, doc)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_policies"
    problems = {(p["at"], p["message"]) for p in body["problems"]}
    # The document's shape is checked first: one problem there is reported alone.
    assert any(at.startswith("policies[") and at.endswith(".calendar") for at, _ in problems)
    policy(doc, "other")["calendar"] = "24x7"
    r = await put_policies(h, doc)
    assert r.status_code == 422
    messages = sorted(p["message"] for p in r.json()["problems"])
    assert messages == sorted(
        [
            "the on-site goal is after the close goal",
            "no verify clock: verify_s is not set",
            "reoffer applies to the on_site clock only",
            "no category no_such",
            "no department water",
            "category potholes has no priority-0 policy",
            "category street_vending has no priority-0 policy",
        ]
    )
    assert await policies(h) == before


async def test_malformed_and_foreign_bodies_are_4xx(h: Harness) -> None:
    admin = h.auth("admin", "root")
    r = await h.client.put("/v1/admin/policies", content=b"{nope", headers=admin)
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    r = await h.client.put("/v1/admin/policies", json=[1, 2], headers=admin)
    assert r.status_code == 422 and r.json()["error"] == "invalid_policies"
    r = await h.client.put("/v1/admin/policies", json={"policies": [], "x": 1}, headers=admin)
    assert r.status_code == 422 and any(p["at"] == "x" for p in r.json()["problems"])
    r = await h.client.put(
        "/v1/admin/policies", json=await policies(h), headers=h.auth("operator", "o")
    )
    assert r.status_code == 403


async def test_the_cli_loads_a_file_and_refuses_a_bad_one(
    h: Harness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc: dict[str, Any] = await policies(h)
    policy(doc, "garbage_overflow")["close_s"] = 12 * 3600
    good, bad = tmp_path / "policies.json", tmp_path / "bad.json"
    good.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    policy(doc, "garbage_overflow")["accept_s"] = 1
    bad.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("GRIDFLOW_DATA_DIR", str(h.settings.data_dir))
    monkeypatch.setenv("GRIDFLOW_ENV", "test")
    if h.settings.db.url:
        monkeypatch.setenv("GRIDFLOW_DB__URL", h.settings.db.url)
    else:
        monkeypatch.delenv("GRIDFLOW_DB__URL", raising=False)

    async def gridflow(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(args))  # the command runs its own loop
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = await gridflow("policies", "load", str(bad))
    assert code == 2
    assert "policies[" in err and "accept_s" in err
    code, out, err = await gridflow("policies", "load", str(good))
    assert code == 0, err
    assert "loaded 7 policies" in out  # the six bundled and the demo city's drill
    assert policy(await policies(h), "garbage_overflow")["close_s"] == 12 * 3600
    code, out, _ = await gridflow("policies", "dump")
    assert code == 0
    assert json.loads(out) == await policies(h)
