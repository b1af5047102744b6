"""Wire types: dates in Kenya time, amounts as exact JSON numbers, document numbers."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    D8,
    D14,
    BhfId,
    Char,
    DiscountRate,
    DocNumber,
    Money,
    Qty,
    Rate,
    Tin,
    format_errors,
    now_d14,
    parse_d8,
    parse_d14,
    to_d8,
    to_d14,
)


class Sample(BaseModel):
    money: Money | None = None
    qty: Qty | None = None
    rate: Rate | None = None
    dc_rate: DiscountRate | None = None
    number: DocNumber | None = None
    d14: D14 | None = None
    d8: D8 | None = None
    tin: Tin | None = None
    bhf: BhfId | None = None
    text: Annotated[str, Char(5)] | None = None


def errors_of(**fields: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Sample.model_validate(fields)
    return format_errors(caught.value)


def test_utc_moment_is_written_in_kenya_time() -> None:
    assert to_d14(datetime(2024, 12, 31, 21, 30, 5, tzinfo=UTC)) == "20250101003005"
    assert to_d8(datetime(2024, 12, 31, 21, 30, tzinfo=UTC)) == "20250101"


def test_other_offsets_are_converted_too() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert to_d14(datetime(2024, 6, 1, 10, 0, tzinfo=new_york)) == "20240601180000"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        to_d14(datetime(2024, 1, 1, 12, 0))


def test_plain_date_is_written_as_is() -> None:
    assert to_d8(date(2024, 2, 29)) == "20240229"


def test_now_is_fourteen_digits_close_to_kenya_clock() -> None:
    stamp = now_d14()
    assert re.fullmatch(r"\d{14}", stamp)
    delta = parse_d14(stamp) - datetime.now(UTC)
    assert abs(delta.total_seconds()) < 5


@pytest.mark.parametrize("bad", ["20241301000000", "20240230120000", "20240101246000", "2024021"])
def test_d14_rejects_impossible_or_malformed(bad: str) -> None:
    assert errors_of(d14=bad)[0][0] == "d14"


@pytest.mark.parametrize("bad", ["2024021", "20241301", "20230229", "2024-02-01", "202402011"])
def test_d8_rejects_impossible_or_malformed(bad: str) -> None:
    assert errors_of(d8=bad)[0][0] == "d8"


def test_dates_accept_python_values() -> None:
    moment = datetime(2024, 4, 15, 12, 30, 39, tzinfo=UTC)
    sample = Sample(d14=moment, d8=date(2024, 4, 15))
    assert (sample.d14, sample.d8) == ("20240415153039", "20240415")


def test_parse_helpers_round_trip() -> None:
    assert to_d14(parse_d14("20240229235959")) == "20240229235959"
    assert parse_d8("20240229") == date(2024, 2, 29)


def test_amounts_dump_as_json_numbers() -> None:
    sample = Sample.model_validate(
        {"money": "1160.00", "qty": 2, "rate": 16, "dc_rate": "12.5", "number": "12"}
    )
    text = json.dumps(sample.model_dump(mode="json", exclude_none=True))
    assert text == '{"money": 1160.0, "qty": 2.0, "rate": 16.0, "dc_rate": 12.5, "number": 12}'


def test_python_dump_keeps_exact_decimals() -> None:
    sample = Sample.model_validate({"money": "0.10"})
    assert sample.model_dump()["money"] == Decimal("0.10")


def test_large_amount_survives_json_exactly() -> None:
    value = Decimal("9999999999999.99")  # 15 significant digits, the cap
    dumped = json.dumps(Sample(money=value).model_dump(mode="json", exclude_none=True))
    assert Decimal(json.loads(dumped, parse_float=str)["money"]) == value


def test_amount_limits() -> None:
    assert errors_of(money="1.005")[0][0] == "money"
    assert errors_of(money="-1")[0][0] == "money"
    assert errors_of(money="10000000000000")[0][0] == "money"
    assert errors_of(money="NaN")[0][0] == "money"
    assert errors_of(money=True)[0][0] == "money"
    assert errors_of(dc_rate="100.01")[0][0] == "dc_rate"


def test_trailing_zeros_are_not_extra_decimals() -> None:
    assert Sample.model_validate({"money": "1160.000"}).money == Decimal("1160")


@pytest.mark.parametrize("good, value", [(7, 7), ("12", 12), ("0", 0)])
def test_document_numbers_accept_integers_and_numeric_strings(good: object, value: int) -> None:
    assert Sample.model_validate({"number": good}).number == value


@pytest.mark.parametrize("bad", ["012", "-1", " 1", "1.0", 1.5, 2.0, True, -3])
def test_document_numbers_refuse_what_kra_would_misread(bad: object) -> None:
    assert errors_of(number=bad)[0][0] == "number"


def test_identifiers() -> None:
    assert Sample(tin="P051234567A", bhf="00").tin == "P051234567A"
    for bad_tin in ["P05123456A", "p051234567a", "1051234567A", "P051234567AA"]:
        assert errors_of(tin=bad_tin)[0][0] == "tin"
    for bad_bhf in ["0", "000", "A0"]:
        assert errors_of(bhf=bad_bhf)[0][0] == "bhf"


def test_char_limits_length_and_refuses_empty() -> None:
    assert Sample(text="abcde").text == "abcde"
    assert errors_of(text="abcdef") == [("text", "String should have at most 5 characters")]
    assert errors_of(text="")[0][0] == "text"
