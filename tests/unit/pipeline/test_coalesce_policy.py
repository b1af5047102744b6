"""Which stock master may be superseded: only one that cannot have reached KRA, whose item
KRA already holds a stock master of, that nothing depends on, and with a later one waiting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from schemas.settings import CoalesceSettings
from worker.coalesce import StockMasterFacts, may_be_superseded, superseder

ON, OFF = CoalesceSettings(), CoalesceSettings(stock_master=False)


def job(**fields: object) -> SimpleNamespace:
    base = {"kind": "stock_master", "state": "pending", "body": None, "maybe_recorded": False}
    return SimpleNamespace(**(base | fields))


def test_a_never_sent_stock_master_is_a_candidate() -> None:
    assert may_be_superseded(job(), ON)


@pytest.mark.parametrize(
    "fields",
    [
        {"body": '{"itemCd": "X"}'},  # frozen: a send may have reached KRA
        {"maybe_recorded": True},
        {"state": "in_flight"},  # found in flight: its worker died mid-call
        {"state": "retry_wait", "body": "{}"},
        {"kind": "stock_io"},
        {"kind": "sale"},
    ],
)
def test_a_job_that_may_have_been_sent_or_is_no_stock_master_is_not(fields: dict) -> None:
    assert not may_be_superseded(job(**fields), ON)


def test_nothing_is_a_candidate_with_the_setting_off() -> None:
    assert not may_be_superseded(job(), OFF)


def test_the_later_stock_master_supersedes_when_every_condition_holds() -> None:
    assert superseder(StockMasterFacts(later_id=9, item_reported=True, has_dependents=False)) == 9


@pytest.mark.parametrize(
    "facts",
    [
        StockMasterFacts(later_id=None, item_reported=True, has_dependents=False),
        StockMasterFacts(later_id=9, item_reported=False, has_dependents=False),  # first one
        StockMasterFacts(later_id=9, item_reported=True, has_dependents=True),
    ],
)
def test_otherwise_the_stock_master_is_sent(facts: StockMasterFacts) -> None:
    assert superseder(facts) is None
