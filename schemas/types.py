"""Constrained wire types shared by every OSCU model (the spec's field tables).

The wire is JSON produced by KRA's Java back end, so each alias pins down what survives that
trip: identifiers keep their exact shape, dates are KRA's compact digit strings in Kenya time,
and amounts are decimals that must leave as JSON *numbers* (KRA rejects quoted amounts, while
pydantic dumps ``Decimal`` as a string unless told otherwise).

Amounts are ``NUMBER(18,2)`` in the spec; we accept at most 15 significant digits, which is what
a JSON number read as an IEEE double (on either side of the wire) keeps exactly and what lets the
JSON serializer below emit a ``float`` without changing the value.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
)

__all__ = [
    "D8",
    "D14",
    "EAT",
    "BhfId",
    "Char",
    "DiscountRate",
    "DocNumber",
    "Money",
    "Qty",
    "Rate",
    "SecretText",
    "Tin",
    "now_d14",
    "parse_d8",
    "parse_d14",
    "to_d8",
    "to_d14",
]

#: Kenya time: UTC+3 all year (no DST), the zone of every OSCU timestamp.
EAT = timezone(timedelta(hours=3), "EAT")

_D14_FORMAT = "%Y%m%d%H%M%S"
_D8_FORMAT = "%Y%m%d"
_DIGITS_14 = re.compile(r"\d{14}")
_DIGITS_8 = re.compile(r"\d{8}")
_WIRE_INT = re.compile(r"0|[1-9]\d*")


def to_d14(moment: datetime) -> str:
    """Format an aware datetime as KRA's ``yyyyMMddHHmmss`` in Kenya time.

    Naive datetimes are refused: guessing their zone would shift a sale by hours on the wire.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a D14 timestamp needs an aware datetime (naive time is ambiguous)")
    return moment.astimezone(EAT).strftime(_D14_FORMAT)


def to_d8(day: date | datetime) -> str:
    """Format a date as ``yyyyMMdd``; an aware datetime is first moved to Kenya time."""
    if isinstance(day, datetime):
        return to_d14(day)[:8]
    return day.strftime(_D8_FORMAT)


def now_d14() -> str:
    """The current Kenya time as D14 (what ``cfmDt``/``rcptPbctDt`` want at send time)."""
    return to_d14(datetime.now(UTC))


def parse_d14(text: str) -> datetime:
    """Read a D14 string as an aware Kenya-time datetime; ``ValueError`` if not a real one."""
    if not _DIGITS_14.fullmatch(text):
        raise ValueError("expected 14 digits yyyyMMddHHmmss")
    try:
        return datetime.strptime(text, _D14_FORMAT).replace(tzinfo=EAT)
    except ValueError:
        raise ValueError(f"{text} is not a real date-time (yyyyMMddHHmmss)") from None


def parse_d8(text: str) -> date:
    """Read a D8 string as a date; ``ValueError`` if not a real calendar day."""
    if not _DIGITS_8.fullmatch(text):
        raise ValueError("expected 8 digits yyyyMMdd")
    try:
        return datetime.strptime(text, _D8_FORMAT).date()
    except ValueError:
        raise ValueError(f"{text} is not a real date (yyyyMMdd)") from None


def _d14_in(value: Any) -> Any:
    """Python callers may hand over an aware datetime; the wire only ever sees the string."""
    if isinstance(value, datetime):
        return to_d14(value)
    return value


def _d8_in(value: Any) -> Any:
    if isinstance(value, date):
        return to_d8(value)
    return value


def _check_d14(text: str) -> str:
    parse_d14(text)
    return text


def _check_d8(text: str) -> str:
    parse_d8(text)
    return text


#: ``yyyyMMddHHmmss`` in Kenya time, checked to be a real date-time.
D14 = Annotated[str, BeforeValidator(_d14_in), AfterValidator(_check_d14)]
#: ``yyyyMMdd``, checked to be a real calendar day.
D8 = Annotated[str, BeforeValidator(_d8_in), AfterValidator(_check_d8)]

#: Taxpayer PIN: letter + 9 digits + letter, e.g. ``P051234567A`` (anchored where used).
TIN_PATTERN = r"[A-Z]\d{9}[A-Z]"
#: Branch id: two digits, ``00`` is head office.
BHF_ID_PATTERN = r"\d{2}"
#: The same, anchored: what a field or a path parameter is checked against.
TIN_RE = rf"^{TIN_PATTERN}$"
BHF_ID_RE = rf"^{BHF_ID_PATTERN}$"
Tin = Annotated[str, StringConstraints(pattern=TIN_RE)]
BhfId = Annotated[str, StringConstraints(pattern=BHF_ID_RE)]


def Char(max_length: int) -> StringConstraints:
    """Metadata for the spec's ``CHAR(n)``: use as ``Annotated[str, Char(20)]``.

    Empty strings are refused: KRA reports them as "cannot be null", so an optional field is
    sent as ``null`` or left out, never as ``""``.
    """
    return StringConstraints(min_length=1, max_length=max_length)


def _exact_json_number(value: Decimal) -> float:
    """Emit a JSON number; ``float`` is exact here because values are capped at 15 digits."""
    number = float(value)
    if Decimal(repr(number)) != value:  # pragma: no cover - guarded by max_digits
        raise ValueError(f"{value} cannot be written exactly as a JSON number")
    return number


_AS_NUMBER = PlainSerializer(_exact_json_number, return_type=float, when_used="json")


def _no_bool(value: Any) -> Any:
    """``True`` is an ``int`` to Python but never a quantity or a number on the wire."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


_NOT_BOOL = BeforeValidator(_no_bool)

#: Amount, NUMBER(18,2) on the wire (≤ 2 decimals, non-negative, 15 significant digits).
Money = Annotated[Decimal, _NOT_BOOL, Field(ge=0, max_digits=15, decimal_places=2), _AS_NUMBER]
#: Quantity or package count, NUMBER(13,2).
Qty = Annotated[Decimal, _NOT_BOOL, Field(ge=0, max_digits=13, decimal_places=2), _AS_NUMBER]
#: Tax rate in percent, NUMBER(7,2).
Rate = Annotated[Decimal, _NOT_BOOL, Field(ge=0, max_digits=7, decimal_places=2), _AS_NUMBER]
#: Discount rate in percent, NUMBER(5,2); more than 100 % would make the taxable base negative.
DiscountRate = Annotated[
    Decimal, _NOT_BOOL, Field(ge=0, le=100, max_digits=5, decimal_places=2), _AS_NUMBER
]


def _wire_int(value: Any) -> Any:
    """Accept JSON integers and the numeric strings Odoo sends; refuse what KRA would misread.

    Leading zeros, signs, blanks, fractions and booleans are refused rather than coerced, so a
    document number can never silently change on the way through.
    """
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    if isinstance(value, str):
        if not _WIRE_INT.fullmatch(value):
            raise ValueError("expected an integer without sign, blanks or leading zeros")
        return int(value)
    if isinstance(value, float):
        raise ValueError("expected an integer, not a decimal number")
    return value


#: Document numbers (``invcNo``, ``orgInvcNo``, ``sarNo``, ``orgSarNo``): JSON integers ≥ 0.
DocNumber = Annotated[int, BeforeValidator(_wire_int), Field(ge=0)]


def _reveal(secret: SecretStr) -> str:
    return secret.get_secret_value()


#: A secret that must still reach the wire (a branch user's password): hidden from ``repr`` and
#: from ``model_dump()``, revealed only by ``model_dump(mode="json")``, which builds the body.
SecretText = Annotated[SecretStr, PlainSerializer(_reveal, return_type=str, when_used="json")]
