"""The admin HTTP endpoints of the replay tooling: same rules as the CLI, audited as the key."""

from __future__ import annotations

from tests.integration.ops.test_replay_cli import TYPO, mistyped_sale
from tests.integration.pipeline_fixtures import Pipeline
from tests.integration.producers.intake_fixtures import start_intake
from tests.workload import TIN, branch_workload, item_code
from worker import metrics


def test_admin_endpoints_edit_replay_skip_and_audit(pipeline: Pipeline) -> None:
    # Given a refused sale (910) with its stock jobs blocked
    pipeline.enqueue(branch_workload("00", 6) + mistyped_sale("00:typo") + mistyped_sale("00:b"))
    pipeline.drain()
    assert pipeline.job("00:typo").state == "dead"
    intake = start_intake(pipeline.runtime.settings.database_url)
    try:
        admin_key = intake.key(TIN, admin=True)
        admin = intake.client(admin_key)
        key_id = admin_key.split("_")[1]
        tenant = intake.client(intake.key(TIN))

        # When a tenant key asks, it is refused; the admin key sees the dead letters
        assert tenant.get("/v1/admin/dead").status_code == 403
        dead = admin.get("/v1/admin/dead", params={"branch": f"{TIN}/00", "code": "910"}).json()
        ids = {d["idempotency_key"]: d["id"] for d in dead}
        assert set(ids) == {"00:typo", "00:b"}
        job = admin.get(f"/v1/admin/jobs/{ids['00:typo']}").json()
        assert job["attempts"][0]["result_code"] == "910"
        assert admin.get("/v1/admin/jobs/999999").status_code == 404

        # ... an invalid edit is 422, a valid one is applied, and the replay is accepted
        base = f"/v1/admin/jobs/{ids['00:typo']}"
        bad = admin.post(f"{base}/edit", json={"set": {"itemList.0.qty": -1}})
        assert bad.status_code == 422
        fixed = {"itemList.0.itemCd": item_code(1)}
        edited = admin.post(f"{base}/edit", json={"set": fixed, "reason": "typo"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["payload"]["itemList"][0]["itemCd"] == item_code(1) != TYPO
        assert admin.post(f"{base}/replay", json={"reason": "fixed"}).status_code == 200
        pipeline.drain()
        assert pipeline.job("00:typo").state == "accepted"
        assert pipeline.job("00:typo:stock-out").state == "accepted"
        again = admin.post(f"{base}/replay", json={})
        assert again.status_code == 409 and "KRA already signed it" in again.text

        # ... skip needs a reason
        other = f"/v1/admin/jobs/{ids['00:b']}"
        assert admin.post(f"{other}/skip", json={}).status_code == 422
        assert admin.post(f"{other}/skip", json={"reason": " "}).status_code == 422
        assert admin.post(f"{other}/skip", json={"reason": "voided"}).status_code == 200

        # Then the audit log names the key as the actor of each action
        audit = admin.get("/v1/admin/audit").json()
        assert [(a["action"], a["actor"]) for a in audit] == [
            ("skip", f"api:{key_id}"),
            ("replay", f"api:{key_id}"),
            ("edit", f"api:{key_id}"),
        ]
    finally:
        intake.stop()
        metrics.uninstall_db_collector()
