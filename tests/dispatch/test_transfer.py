"""回退: a worker hands an accepted case back with a reason; it goes to someone else."""

from __future__ import annotations

from tests.dispatch.test_sla import report_in_single_worker_grid, types
from tests.harness import Harness


async def test_a_returned_case_goes_to_another_worker(h: Harness) -> None:
    _, case_id, _ = await report_in_single_worker_grid(h, "garbage_overflow")
    task = await h.offered_task(case_id)
    first = task["worker_id"]
    worker = h.auth("worker", first)
    url = f"/v1/tasks/{task['id']}"
    early = await h.client.post(f"{url}/return", json={"reason": "x"}, headers=worker)
    assert early.status_code == 409  # only an accepted task can be handed back
    assert (await h.client.post(f"{url}/accept", headers=worker)).status_code == 200
    empty = await h.client.post(f"{url}/return", json={"reason": ""}, headers=worker)
    assert empty.status_code == 422
    r = await h.client.post(
        f"{url}/return", json={"reason": "需要环卫车，不是网格员能处理的"}, headers=worker
    )
    assert r.status_code == 200 and r.json()["status"] == "returned"
    second = await h.offered_task(case_id, not_worker=first)
    assert second["worker_id"] != first
    case = await h.case(case_id)
    assert types(case)[-2:] == ["TaskReturned", "TaskOffered"]
    returned = case["timeline"][-2]["data"]
    assert returned == {
        "task_id": task["id"],
        "worker_id": first,
        "reason": "需要环卫车，不是网格员能处理的",
    }
    # The first worker's task is over: nothing more can be done with it.
    assert (await h.client.post(f"{url}/accept", headers=worker)).status_code == 409
    # If the second hands it back too, the first is still not asked again.
    other = h.auth("worker", second["worker_id"])
    await h.client.post(f"/v1/tasks/{second['id']}/accept", headers=other)
    await h.client.post(f"/v1/tasks/{second['id']}/return", json={"reason": "同上"}, headers=other)
    third = (await h.case(case_id))["task"]
    assert third is None or third["worker_id"] not in (first, second["worker_id"])
