from tests.harness import Harness


async def test_ready_and_report(h: Harness) -> None:
    r = await h.client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["grids"] is True
    rep = await h.report()
    case_id = await h.case_of(rep["id"])
    task = await h.offered_task(case_id)
    assert task["worker_id"].startswith("w-")
