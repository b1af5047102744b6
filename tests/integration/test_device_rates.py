"""Device onboarding and KRA's own tax rates, as a branch meets them (SQLite and PostgreSQL).

KRA checks every sale's ``taxRtA..E`` against its configuration, which may differ from the
spec's table (a live host expected E = 0 % where the spec says 8 %). The relay takes each
branch's rates from its device's code list (class 04) and computes every amount with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from producers import builders as b
from producers.enqueue import InvalidRecords
from schemas.vat import VatScheme, fill_sale_amounts
from simulator.options import parse_tax_rates
from simulator.testing import SimClient
from tests.helpers import ledger_writes
from tests.integration.pipeline_fixtures import Pipeline
from tests.workload import TIN, item_code
from worker import codes
from worker.device_init import DeviceInitError, device_views, import_device, init_device
from worker.metrics import DbCollector
from worker.outbox import device_queries as dq

NOW = datetime.now(UTC)
DIESEL = b.SaleLine(item_code(2), "Diesel", Decimal("10"), Decimal("180"), tax_ty_cd="E")
KRA_E_ZERO = parse_tax_rates(["E=0"])


def diesel_stock(bhf: str = "00") -> list[dict[str, Any]]:
    return [
        b.item(TIN, bhf, "item-2", item_cd=item_code(2), item_nm="Diesel", price=Decimal("180"),
               tax_ty_cd="E"),
        b.stock_io(TIN, bhf, "opening", [with_qty(DIESEL, "100")], sar_ty_cd="06", at=NOW,
                   depends_on=["item-2"]),
    ]  # fmt: skip


def with_qty(line: b.SaleLine, qty: str) -> b.SaleLine:
    return b.SaleLine(line.item_cd, line.item_nm, Decimal(qty), line.prc, tax_ty_cd="E")


def sales_sent(p: Pipeline) -> list[dict[str, Any]]:
    return [w["body"] for w in ledger_writes(p.sim.ledger_path, ["saveTrnsSalesOsdc"])]


def issued_key(p: Pipeline, bhf: str) -> str:
    """The cmcKey KRA issued (the simulator's ledger is KRA's own store)."""
    for record in ledger_writes(p.sim.ledger_path, ["selectInitOsdcInfo"]):
        if record["bhfId"] == bhf:
            return str(record["data"]["info"]["cmcKey"])
    raise AssertionError(f"no init of {bhf} in the ledger")


# --------------------------------------------------------------------------- onboarding


@pytest.mark.parametrize("key_at_root", [False, True], ids=["key-in-data-info", "key-at-root"])
def test_init_stores_the_key_wherever_kra_puts_it_and_the_branch_sends(
    pipeline_factory: Any, key_at_root: bool
) -> None:
    # Given KRA answers init with the cmcKey in data.info (spec) or at the envelope root
    # (KRA's sandbox, per the published SDK)
    p = pipeline_factory(init_key_at_root=key_at_root)

    # Then the device works: its jobs are accepted with the key KRA issued
    p.enqueue([*diesel_stock(), b.sale(TIN, "00", "s1", [DIESEL], trd_invc_no="T1", at=NOW)])
    p.drain()
    assert set(p.states().values()) == {"accepted"}
    device = p.runtime.devices.get(TIN, "00")
    assert device.credentials.cmc_key.get_secret_value() == issued_key(p, "00")
    # ... and its rates came from KRA at init, with no operator step
    assert device.tax_rates == parse_tax_rates([])


def test_a_second_init_of_a_device_says_to_use_device_import(pipeline_factory: Any) -> None:
    # Given a device another system initialised (KRA answers 902 and never repeats the key)
    p = pipeline_factory(branches=())
    with SimClient(p.sim.url) as other_system:
        other_system.init(TIN, "00", "SER-00")

    # When we try to initialise it
    with pytest.raises(DeviceInitError) as refused:
        init_device(p.runtime.engine, p.runtime.client, p.runtime.devices, tin=TIN,
                    bhf_id="00", serial="SER-00")  # fmt: skip

    # Then the error names KRA's code and the command that brings the key in
    assert "902" in str(refused.value) and "etims-relay device import" in str(refused.value)


def test_import_checks_the_key_with_kra_before_storing_it(pipeline_factory: Any) -> None:
    # Given a device initialised by another system, and jobs waiting for it
    p = pipeline_factory(branches=())
    with SimClient(p.sim.url) as other_system:
        key = other_system.init(TIN, "00", "SER-00").cmc_key
    p.enqueue([*diesel_stock(), b.sale(TIN, "00", "s1", [DIESEL], trd_invc_no="T1", at=NOW)])
    assert p.drain().status == "parked"

    # When an operator imports a wrong key: a clear error, nothing stored, still parked
    with pytest.raises(DeviceInitError, match="KRA refused the key") as refused:
        import_device(p.runtime.engine, p.runtime.client, p.runtime.devices, tin=TIN,
                      bhf_id="00", serial="SER-00", cmc_key=SecretStr("not-the-key"))  # fmt: skip
    assert "not-the-key" not in str(refused.value)
    assert device_views(p.runtime.engine) == []
    assert "device init" in p.branch().parked_reason

    # When the right key is imported (with stray whitespace from the file)
    info = import_device(p.runtime.engine, p.runtime.client, p.runtime.devices, tin=TIN,
                         bhf_id="00", serial="SER-00", cmc_key=SecretStr(f"  {key}\n"),
                         sdc_id="KRACU0100000001")  # fmt: skip

    # Then the device is stored with its rates, the branch resumes and KRA accepts its jobs
    assert info.tax_rates == parse_tax_rates([])
    assert p.branch().parked_reason is None
    p.drain()
    assert set(p.states().values()) == {"accepted"}
    assert sales_sent(p)[0]["invcNo"] == 1
    (view,) = device_views(p.runtime.engine)
    assert view["sdc_id"] == "KRACU0100000001" and view["key_ok_at"] is not None
    assert key not in repr(view) and key not in repr(info)


def test_device_list_shows_when_the_key_last_worked(pipeline: Pipeline) -> None:
    # Given a registered device whose key time was never set by a send
    with pipeline.runtime.engine.begin() as conn:
        dq.set_device_key_ok(conn, TIN, "00", 0.0)

    # When the branch sends accepted jobs
    pipeline.enqueue(diesel_stock())
    pipeline.drain()

    # Then the list shows the key worked just now, and shows no key
    (view,) = device_views(pipeline.runtime.engine)
    assert view["key_ok_at"] > NOW.timestamp() - 5
    assert view["sdc_id"] and view["mrc_no"]
    assert "cmc" not in " ".join(view).lower()


# --------------------------------------------------------------------------- tax rates


def test_kra_e_rate_of_zero_is_what_the_relay_sends(pipeline_factory: Any) -> None:
    # Given KRA's code list says E is 0 % (the spec's table says 8 %)
    p = pipeline_factory(tax_rates=KRA_E_ZERO)

    # When a diesel (E) sale drains
    p.enqueue([*diesel_stock(), b.sale(TIN, "00", "s1", [DIESEL], trd_invc_no="T1", at=NOW)])
    p.drain()

    # Then it went with KRA's rate and no tax, and KRA accepted it
    assert p.job("s1").state == "accepted"
    (sale,) = sales_sent(p)
    assert (Decimal(str(sale["taxRtE"])), Decimal(str(sale["taxAmtE"]))) == (0, 0)


def test_an_override_that_disagrees_with_kra_is_refused_in_kras_words_and_reported(
    pipeline_factory: Any,
) -> None:
    # Given ETIMS_TAX_RATES still says E 8 % while KRA's list says 0 %
    p = pipeline_factory(tax_rates=KRA_E_ZERO)
    p.runtime.settings.tax_rates = {**KRA_E_ZERO, "E": Decimal("8")}

    # When an E sale drains
    p.enqueue([*diesel_stock(), b.sale(TIN, "00", "s1", [DIESEL], trd_invc_no="T1", at=NOW)])
    p.drain()

    # Then KRA refuses it with the message a live host gives, and since every sale of the
    # day would be refused the same way, the branch parks (job and number held) with KRA's
    # words and the fix, instead of dead-lettering each sale
    job = p.job("s1")
    assert job.state == "pending" and job.invc_no == 1
    reason = p.branch().parked_reason
    assert "Rule taxRtE failed: Tax rate mismatch. Expected: 0.00, Found: 8" in reason
    assert "ETIMS_TAX_RATES" in reason
    # ... and the disagreement is a metric an alert can watch
    collector = DbCollector(p.runtime.engine, tax_override=p.runtime.settings.tax_rates)
    samples = {
        s.labels["tax_type"]: s.value
        for family in collector.collect()
        if family.name == "etims_tax_rate_override_mismatches"
        for s in family.samples
    }
    assert samples == {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 1.0}


def test_a_branch_without_rates_parks_until_codes_sync(pipeline_factory: Any) -> None:
    # Given a device whose code list could not be fetched at init
    p = pipeline_factory(branches=())
    p.sim.add_fault(endpoint="selectCodeList", kind="result_code", code="896", times=1)
    info = init_device(p.runtime.engine, p.runtime.client, p.runtime.devices, tin=TIN,
                       bhf_id="00", serial="SER-00")  # fmt: skip
    assert info.tax_rates is None and "896" in info.codes_problem

    # When its jobs drain: what needs no rate goes, the first amount waits, parked, not guessed
    p.enqueue([*diesel_stock(), b.sale(TIN, "00", "s1", [DIESEL], trd_invc_no="T1", at=NOW)])
    assert p.drain().status == "parked"
    reason = p.branch().parked_reason
    assert reason.startswith("no tax rates from KRA yet") and "etims-relay codes sync" in reason
    assert p.states() == {"item-2": "accepted", "opening": "pending", "s1": "pending"}
    assert p.job("opening").sar_no is None and p.job("opening").body is None

    # When the codes are synced
    (result,) = codes.sync_all(p.runtime.engine, p.runtime.client, p.runtime.devices)
    assert result.outcome == "accepted" and result.changed

    # Then the branch resumes and everything is accepted, numbered from 1
    assert p.branch().parked_reason is None
    p.drain()
    assert set(p.states().values()) == {"accepted"}
    assert p.job("opening").sar_no == 1 and sales_sent(p)[0]["invcNo"] == 1


def test_a_failed_sync_keeps_the_rates_stored_before(pipeline: Pipeline) -> None:
    pipeline.sim.add_fault(endpoint="selectCodeList", kind="result_code", code="901", times=1)
    (result,) = codes.sync_all(pipeline.runtime.engine, pipeline.runtime.client,
                               pipeline.runtime.devices)  # fmt: skip
    assert result.outcome == "auth" and result.rates is None
    assert pipeline.runtime.devices.get(TIN, "00").tax_rates == parse_tax_rates([])


def test_enqueue_checks_producer_amounts_with_the_branch_rates(pipeline_factory: Any) -> None:
    # Given a branch whose KRA rate for E is 0 %
    p = pipeline_factory(tax_rates=KRA_E_ZERO)
    sale = b.sale(TIN, "00", "s1", [DIESEL], trd_invc_no="T1", at=NOW)

    # When a producer sends amounts computed with 8 %, the enqueue refuses them, naming a field
    wrong = {**sale, "payload": fill_sale_amounts(sale["payload"], VatScheme.SPLIT,
                                                  parse_tax_rates([]))}  # fmt: skip
    with pytest.raises(InvalidRecords) as refused:
        p.enqueue([wrong])
    assert any(e.path == "payload.taxRtE" for e in refused.value.errors)

    # Then amounts computed with KRA's 0 % are taken, and KRA accepts the sale
    right = {**sale, "payload": fill_sale_amounts(sale["payload"], VatScheme.SPLIT, KRA_E_ZERO)}
    p.enqueue([*diesel_stock(), right])
    p.drain()
    assert p.job("s1").state == "accepted"


def test_the_daily_beat_task_syncs_codes_and_resumes_a_branch(pipeline_factory: Any) -> None:
    from worker.celery_app import create_app
    from worker.runtime import install_runtime, reset_runtime
    from worker.tasks import sync_codes_task
    from worker.wake import SYNC_CODES_TASK

    # Given a branch parked for want of rates (KRA's code list failed at init)
    p = pipeline_factory(branches=())
    p.sim.add_fault(endpoint="selectCodeList", kind="result_code", code="896", times=1)
    init_device(p.runtime.engine, p.runtime.client, p.runtime.devices, tin=TIN,
                bhf_id="00", serial="SER-00")  # fmt: skip
    p.enqueue(diesel_stock())
    assert p.drain().status == "parked"

    # When the beat's task runs (it is scheduled daily by default)
    schedule = create_app(p.runtime.settings, "memory://").conf.beat_schedule["sync-codes"]
    assert (schedule["task"], schedule["schedule"]) == (SYNC_CODES_TASK, 86400.0)
    install_runtime(p.runtime)
    try:
        assert sync_codes_task() == 1
    finally:
        reset_runtime()

    # Then the branch is unparked and drains
    assert p.branch().parked_reason is None
    p.drain()
    assert set(p.states().values()) == {"accepted"}
