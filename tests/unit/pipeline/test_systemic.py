"""The one table of systemic rejections, and reading KRA's expected number from its answer."""

from __future__ import annotations

import pytest

from worker.oscu.outcome import CallOutcome, OutcomeKind
from worker.systemic import SYSTEMIC_RULES, expectation, systemic_rule

AUTH = "device or credentials refused"
TAX = "Rule taxRtE failed: Tax rate mismatch. Expected: 0.00, Found: 8"


def answer(kind: OutcomeKind, code: str | None, message: str) -> CallOutcome:
    return CallOutcome(kind, "saveTrnsSalesOsdc", code, message)


@pytest.mark.parametrize(
    ("kind", "code", "message", "rule"),
    [
        (OutcomeKind.AUTH, "900", "No header information", AUTH),
        (OutcomeKind.AUTH, "901", "It is not a valid device", AUTH),
        (OutcomeKind.AUTH, "905", "Only OSCU device can be verified", AUTH),
        (OutcomeKind.AUTH, None, "HTTP 401 without an OSCU result code", AUTH),
        (OutcomeKind.REJECTED, "910", TAX, "tax rate mismatch"),
        (OutcomeKind.REJECTED, "910", "The OSCU device is deactivated", "device deactivated"),
        (OutcomeKind.REJECTED, "999", "Device inactive: contact KRA", "device deactivated"),
        (OutcomeKind.REJECTED, "910", "itemList.0.itemCd: item KE2 is not registered", None),
        (OutcomeKind.REJECTED, "910", "rsdQty mismatch. Expected: 4 but found: 3", None),
        (OutcomeKind.REJECTED, "911", "no request full text", None),
        (OutcomeKind.TRANSIENT, "999", "Device inactive", None),  # not a refusal: retried
        (OutcomeKind.DUPLICATE, "994", "tax rate mismatch", None),
    ],
)  # fmt: skip
def test_which_refusals_are_systemic(kind, code, message, rule) -> None:
    found = systemic_rule(answer(kind, code, message))
    assert (found.name if found else None) == rule


def test_every_rule_names_the_command_that_fixes_it() -> None:
    for rule in SYSTEMIC_RULES:
        assert "etims-relay" in rule.fix and "{branch}" in rule.fix


@pytest.mark.parametrize(
    ("message", "counter", "expected"),
    [
        ("Invalid invcNo sequence, expected: 43 but found: 41", "invcNo", 43),
        ("Invalid invcNo sequence, expected: 8 but found: 7", "invcNo", 8),
        ("Invalid invcNo sequence, expected: greater than 42 but found: 41", "invcNo", 43),
        ("Invalid sarNo sequence, expected: 4 but found: 6", "sarNo", 4),
        ("invalid INVCNO sequence. Expected 12, found 15", "invcNo", 12),
        ("Invalid sarNo sequence, expected: 4 but found: 6", "invcNo", None),
        ("rsdQty mismatch. Expected: 4 but found: 3", "invcNo", None),
        ("rsdQty mismatch. Expected: 4 but found: 3", "sarNo", None),
        ("Invalid itemCd Sequence. Expected sequence ending with: ********7", "invcNo", None),
        ("Rule taxRtE failed: Tax rate mismatch. Expected: 0.00, Found: 8", "invcNo", None),
        ("Invalid invcNo sequence, expected: 43 but found: 41", None, None),
        ("", "invcNo", None),
    ],
)
def test_a_sequence_answer_is_read_for_its_own_counter_only(message, counter, expected) -> None:
    found = expectation(message, counter)
    assert (found.expected if found else None) == expected
