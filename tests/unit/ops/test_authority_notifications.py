"""The authority's push format, without a database: one model per type, the delivery key a
redelivery is recognised by, and the language kept from ``Accept-Language``."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from worker.authority_notifications import (
    AUTHORITY_EVENT,
    PosDeviceUnused,
    canonical_body,
    delivery_key,
    language,
)


def test_each_type_gets_its_own_model_and_keeps_unknown_fields() -> None:
    event = AUTHORITY_EVENT.validate_python(
        {"Id": "SER-1", "Type": "PosDeviceUnused", "Message": {"UnusedDays": 30, "Extra": 1}}
    )
    assert isinstance(event, PosDeviceUnused)
    assert event.Message.UnusedDays == 30
    assert json.loads(canonical_body(event))["Message"] == {"UnusedDays": 30, "Extra": 1}
    with pytest.raises(ValidationError):
        AUTHORITY_EVENT.validate_python(
            {"Id": "SER-1", "Type": "PosDeviceUnused", "Message": {"UnusedDays": -1}}
        )


def test_a_redelivery_has_the_same_key_whatever_the_field_order() -> None:
    one = AUTHORITY_EVENT.validate_python(
        {"Id": "SER-1", "Type": "PosDeactivated", "Message": {"Reason": "x", "Text": "t"}}
    )
    reordered = AUTHORITY_EVENT.validate_python(
        {"Message": {"Text": "t", "Reason": "x"}, "Type": "PosDeactivated", "Id": "SER-1"}
    )
    other = AUTHORITY_EVENT.validate_python(
        {"Id": "SER-1", "Type": "PosDeactivated", "Message": {"Reason": "y", "Text": "t"}}
    )
    assert delivery_key(canonical_body(one)) == delivery_key(canonical_body(reordered))
    assert delivery_key(canonical_body(one)) != delivery_key(canonical_body(other))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ar", "ar"),
        ("en-US,en;q=0.9", "en"),
        ("AR-EG", "ar"),
        ("fr", None),
        (None, None),
        ("", None),
    ],
)
def test_language_is_ar_or_en(header: str | None, expected: str | None) -> None:
    assert language(header) == expected
