"""Field checks of OSCU request bodies, written from the spec's field tables.

A second reading on purpose: this module does not import ``schemas`` (the request models the
relay builds its bodies with). Had the simulator validated with those models, a misread field
(a wrong length, a date format, a field the spec does not have) would pass on both sides by
construction; written apart, such a misreading fails a test. tests/unit/test_layering.py keeps
it that way.

Reading rules (the spec's field tables):

- ``CHAR(n)``: a JSON string of at most ``n`` characters. An empty string counts as absent
  (KRA answers "cannot be null" for it), so it fails a required field and passes an optional
  one.
- ``NUMBER(p,s)``: a JSON number (never a string or a boolean), non-negative, with at most
  ``s`` decimal places and ``p - s`` integer digits.
- ``D8``/``D14``: ``yyyyMMdd`` / ``yyyyMMddHHmmss`` digit strings naming a real date.
- Codes: the class's code values (§5), as strings.
- A field the table does not list is refused: a misspelt field would otherwise be dropped and
  reach KRA as a missing one. Besides the table, any body may carry ``tin``, ``bhfId`` and
  ``cmcKey`` (the spec lists them as request fields; the caller checks them against the
  headers), and the receipt may carry ``rptNo`` (sent by several integrations, ignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["BODY_CREDENTIALS", "TABLES", "field_problems"]

Problems = list[tuple[str, str]]
Check = Callable[[str, Any], Problems]

#: Fields the spec lists on every request besides the endpoint's own (checked by the caller
#: against the headers, since the headers are what KRA authenticates).
BODY_CREDENTIALS = ("tin", "bhfId", "cmcKey")

_TIN = re.compile(r"[A-Z][0-9]{9}[A-Z]")
_BHF = re.compile(r"[0-9]{2}")


@dataclass(frozen=True, slots=True)
class Field:
    required: bool
    check: Check


def _join(path: str, name: str | int) -> str:
    return f"{path}.{name}" if path else str(name)


def _present(value: Any) -> bool:
    return value is not None and value != ""


# -- scalar checks ------------------------------------------------------------------------------


def char(size: int) -> Check:
    def check(path: str, value: Any) -> Problems:
        if not isinstance(value, str):
            return [(path, f"must be a string (CHAR({size}))")]
        if len(value) > size:
            return [(path, f"at most {size} characters, found {len(value)}")]
        return []

    return check


def pattern(regex: re.Pattern[str], what: str) -> Check:
    def check(path: str, value: Any) -> Problems:
        if not isinstance(value, str) or not regex.fullmatch(value):
            return [(path, f"must be {what}, found {value!r}")]
        return []

    return check


def code(*values: str) -> Check:
    allowed = frozenset(values)

    def check(path: str, value: Any) -> Problems:
        if not isinstance(value, str) or value not in allowed:
            return [(path, f"unknown code {value!r}; one of {', '.join(sorted(allowed))}")]
        return []

    return check


def date(digits: int) -> Check:
    layout = "%Y%m%d%H%M%S" if digits == 14 else "%Y%m%d"
    shape = "yyyyMMddHHmmss" if digits == 14 else "yyyyMMdd"

    def check(path: str, value: Any) -> Problems:
        if not isinstance(value, str) or len(value) != digits or not value.isdigit():
            return [(path, f"must be {digits} digits {shape}, found {value!r}")]
        try:
            datetime.strptime(value, layout)
        except ValueError:
            return [(path, f"{value} is not a real date ({shape})")]
        return []

    return check


def number(precision: int, scale: int, *, positive: bool = False) -> Check:
    """NUMBER(p,s); ``positive`` refuses 0 as well (a quantity)."""

    def check(path: str, value: Any) -> Problems:
        amount = wire_decimal(value)
        if amount is None:
            return [(path, f"must be a JSON number (NUMBER({precision},{scale})), found {value!r}")]
        if amount < 0 or (positive and amount == 0):
            return [(path, f"must be {'above' if positive else 'at least'} 0, found {value}")]
        exponent = amount.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        whole = len(str(int(amount))) if amount >= 1 else 0
        if places > scale or whole > precision - scale:
            return [(path, f"at most {scale} decimals and {precision - scale} digits before")]
        return []

    return check


def integer(*, low: int = 0, high: int | None = None) -> Check:
    def check(path: str, value: Any) -> Problems:
        if isinstance(value, bool) or not isinstance(value, int):
            return [(path, f"must be a JSON integer, found {value!r}")]
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            return [(path, f"must be {bound}, found {value}")]
        return []

    return check


def wire_decimal(value: Any) -> Decimal | None:
    """A JSON number as the exact decimal it was written as; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    return None


# -- structure ----------------------------------------------------------------------------------


def check_object(
    path: str, body: Mapping[str, Any], table: Mapping[str, Field], extras: tuple[str, ...] = ()
) -> Problems:
    problems: Problems = []
    for name, rule in table.items():
        value = body.get(name)
        if not _present(value):
            if rule.required:
                problems.append((_join(path, name), "required (missing, null or empty)"))
            continue
        problems += rule.check(_join(path, name), value)
    for name in body:
        if name not in table and name not in extras:
            problems.append((_join(path, name), "unknown field"))
    return problems


def obj(table: Mapping[str, Field], extras: tuple[str, ...] = ()) -> Check:
    def check(path: str, value: Any) -> Problems:
        if not isinstance(value, dict):
            return [(path, "must be a JSON object")]
        return check_object(path, value, table, extras)

    return check


def lines(table: Mapping[str, Field]) -> Check:
    """``itemList``: 1..999 objects numbered ``itemSeq`` 1..n in order."""

    def check(path: str, value: Any) -> Problems:
        if not isinstance(value, list) or not 1 <= len(value) <= 999:
            return [(path, "must be a list of 1 to 999 lines")]
        problems: Problems = []
        for index, line in enumerate(value):
            where = _join(path, index)
            if not isinstance(line, dict):
                problems.append((where, "must be a JSON object"))
                continue
            problems += check_object(where, line, table)
            seq = line.get("itemSeq")
            if isinstance(seq, int) and seq != index + 1:
                problems.append((_join(where, "itemSeq"), f"must be {index + 1} (1..n in order)"))
        return problems

    return check


def req(check: Check) -> Field:
    return Field(True, check)


def opt(check: Check) -> Field:
    return Field(False, check)


# -- code classes (the spec's code lists) ----------------------------------------------------

YES_NO = code("Y", "N")
TAX_TYPE = code("A", "B", "C", "D", "E")
PAYMENT_TYPE = code("01", "02", "03", "04", "05", "06", "07")
PROGRESS = code("01", "02", "03", "04", "05", "06")
SALES_TYPE = code("N", "C", "P", "T")
REFUND_REASON = code("01", "02", "03", "04", "05", "06")
REG_TYPE = code("A", "M")
STOCK_IO_TYPE = code("01", "02", "03", "04", "05", "06", "11", "12", "13", "14", "15", "16")
PRODUCT_TYPE = code("1", "2", "3")
IMPORT_STATUS = code("1", "2", "3", "4")

TIN = pattern(_TIN, "a PIN: letter, 9 digits, letter")
BHF_ID = pattern(_BHF, "2 digits")
D8 = date(8)
D14 = date(14)
AMOUNT = number(18, 2)
QTY = number(13, 2)
RATE = number(7, 2)
DOC_NO = integer(low=1)
ORG_NO = integer(low=0)
COUNT = integer(low=1, high=999)

AUDIT: dict[str, Field] = {
    "regrId": req(char(20)),
    "regrNm": req(char(60)),
    "modrId": req(char(20)),
    "modrNm": req(char(60)),
}
TAX_HEADER: dict[str, Field] = {
    **{f"taxblAmt{t}": req(AMOUNT) for t in "ABCDE"},
    **{f"taxRt{t}": req(RATE) for t in "ABCDE"},
    **{f"taxAmt{t}": req(AMOUNT) for t in "ABCDE"},
    "totTaxblAmt": req(AMOUNT),
    "totTaxAmt": req(AMOUNT),
    "totAmt": req(AMOUNT),
}
LAST_REQ_DT = {"lastReqDt": req(D14)}

# -- endpoint tables (spec §3.3.x) -------------------------------------------------------------

SALE_RECEIPT: dict[str, Field] = {
    "custTin": opt(TIN),
    "custMblNo": opt(char(20)),
    "rcptPbctDt": req(D14),
    "trdeNm": opt(char(20)),
    "adrs": opt(char(200)),
    "topMsg": opt(char(20)),
    "btmMsg": opt(char(20)),
    "prchrAcptcYn": req(YES_NO),
}
SALE_LINE: dict[str, Field] = {
    "itemSeq": req(COUNT),
    "itemClsCd": req(char(10)),
    "itemCd": req(char(20)),
    "itemNm": req(char(200)),
    "bcd": opt(char(20)),
    "pkgUnitCd": req(char(5)),
    "pkg": req(QTY),
    "qtyUnitCd": req(char(5)),
    "qty": req(number(13, 2, positive=True)),
    "prc": req(AMOUNT),
    "splyAmt": req(AMOUNT),
    "dcRt": req(number(5, 2)),
    "dcAmt": req(AMOUNT),
    "isrccCd": opt(char(10)),
    "isrccNm": opt(char(100)),
    "isrcRt": opt(integer(high=100)),
    "isrcAmt": opt(AMOUNT),
    "taxTyCd": req(TAX_TYPE),
    "taxblAmt": req(AMOUNT),
    "taxAmt": req(AMOUNT),
    "totAmt": req(AMOUNT),
}
SALE: dict[str, Field] = {
    "trdInvcNo": req(char(50)),
    "invcNo": req(DOC_NO),
    "orgInvcNo": req(ORG_NO),
    "custTin": opt(TIN),
    "custNm": opt(char(60)),
    "salesTyCd": opt(SALES_TYPE),
    "rcptTyCd": req(code("S", "R")),
    "pmtTyCd": opt(PAYMENT_TYPE),
    "salesSttsCd": req(PROGRESS),
    "cfmDt": req(D14),
    "salesDt": req(D8),
    "stockRlsDt": opt(D14),
    "cnclReqDt": opt(D14),
    "cnclDt": opt(D14),
    "rfdDt": opt(D14),
    "rfdRsnCd": opt(REFUND_REASON),
    "totItemCnt": req(COUNT),
    **TAX_HEADER,
    "prchrAcptcYn": req(YES_NO),
    "remark": opt(char(400)),
    **AUDIT,
    "receipt": req(obj(SALE_RECEIPT, extras=("rptNo",))),
    "itemList": req(lines(SALE_LINE)),
}
STOCK_LINE: dict[str, Field] = {
    "itemSeq": req(COUNT),
    "itemCd": opt(char(20)),
    "itemClsCd": req(char(10)),
    "itemNm": req(char(200)),
    "bcd": opt(char(20)),
    "pkgUnitCd": req(char(5)),
    "pkg": req(QTY),
    "qtyUnitCd": req(char(5)),
    "qty": req(number(13, 2, positive=True)),
    "itemExprDt": opt(D8),
    "prc": req(AMOUNT),
    "splyAmt": req(AMOUNT),
    "totDcAmt": req(AMOUNT),
    "taxblAmt": req(AMOUNT),
    "taxTyCd": req(TAX_TYPE),
    "taxAmt": req(AMOUNT),
    "totAmt": req(AMOUNT),
}
STOCK_IO: dict[str, Field] = {
    "sarNo": req(DOC_NO),
    "orgSarNo": req(ORG_NO),
    "regTyCd": req(REG_TYPE),
    "custTin": opt(TIN),
    "custNm": opt(char(100)),
    "custBhfId": opt(BHF_ID),
    "sarTyCd": req(STOCK_IO_TYPE),
    "ocrnDt": req(D8),
    "totItemCnt": req(COUNT),
    "totTaxblAmt": req(AMOUNT),
    "totTaxAmt": req(AMOUNT),
    "totAmt": req(AMOUNT),
    "remark": opt(char(400)),
    **AUDIT,
    "itemList": req(lines(STOCK_LINE)),
}
PURCHASE_LINE: dict[str, Field] = {
    "itemSeq": req(COUNT),
    "itemCd": opt(char(20)),
    "itemClsCd": req(char(10)),
    "itemNm": req(char(200)),
    "bcd": opt(char(20)),
    "spplrItemClsCd": opt(char(10)),
    "spplrItemCd": opt(char(20)),
    "spplrItemNm": opt(char(200)),
    "pkgUnitCd": opt(char(5)),
    "pkg": req(QTY),
    "qtyUnitCd": req(char(5)),
    "qty": req(number(13, 2, positive=True)),
    "prc": req(AMOUNT),
    "splyAmt": req(AMOUNT),
    "dcRt": req(number(5, 2)),
    "dcAmt": req(AMOUNT),
    "taxblAmt": req(AMOUNT),
    "taxTyCd": req(TAX_TYPE),
    "taxAmt": req(AMOUNT),
    "totAmt": req(AMOUNT),
    "itemExprDt": opt(D8),
}
PURCHASE: dict[str, Field] = {
    "invcNo": req(DOC_NO),
    "orgInvcNo": req(ORG_NO),
    "spplrTin": opt(TIN),
    "spplrBhfId": opt(BHF_ID),
    "spplrNm": opt(char(60)),
    "spplrInvcNo": opt(ORG_NO),
    "regTyCd": req(REG_TYPE),
    "pchsTyCd": req(SALES_TYPE),
    "rcptTyCd": req(code("P", "R")),
    "pmtTyCd": req(PAYMENT_TYPE),
    "pchsSttsCd": req(PROGRESS),
    "cfmDt": opt(D14),
    "pchsDt": req(D8),
    "wrhsDt": opt(D14),
    "cnclReqDt": opt(D14),
    "cnclDt": opt(D14),
    "rfdDt": opt(D14),
    "totItemCnt": req(COUNT),
    **TAX_HEADER,
    "remark": opt(char(400)),
    **AUDIT,
    "itemList": req(lines(PURCHASE_LINE)),
}
ITEM: dict[str, Field] = {
    "itemCd": req(char(20)),
    "itemClsCd": req(char(10)),
    "itemTyCd": req(PRODUCT_TYPE),
    "itemNm": req(char(200)),
    "itemStdNm": opt(char(200)),
    "orgnNatCd": req(char(5)),
    "pkgUnitCd": req(char(5)),
    "qtyUnitCd": req(char(5)),
    "taxTyCd": req(TAX_TYPE),
    "btchNo": opt(char(10)),
    "bcd": opt(char(20)),
    "dftPrc": req(AMOUNT),
    **{f"grpPrcL{n}": opt(AMOUNT) for n in range(1, 6)},
    "addInfo": opt(char(7)),
    "sftyQty": opt(QTY),
    "isrcAplcbYn": req(YES_NO),
    "useYn": req(YES_NO),
    **AUDIT,
}

#: Spec endpoint name -> its body table. Lookups not listed take no body fields.
TABLES: Mapping[str, Mapping[str, Field]] = {
    "selectInitOsdcInfo": {
        "tin": req(TIN),
        "bhfId": req(BHF_ID),
        "dvcSrlNo": req(char(100)),
    },
    "selectCodeList": LAST_REQ_DT,
    "selectNoticeList": LAST_REQ_DT,
    "selectItemClsList": LAST_REQ_DT,
    "selectItemList": LAST_REQ_DT,
    "selectBhfList": LAST_REQ_DT,
    "selectImportItemList": LAST_REQ_DT,
    "selectTrnsPurchaseSalesList": LAST_REQ_DT,
    "selectStockMoveList": LAST_REQ_DT,
    "selectCustomer": {"custmTin": req(TIN)},
    "selectInvoiceDetails": {"invcNo": req(DOC_NO)},
    "saveItem": ITEM,
    "saveItemComposition": {
        "itemCd": req(char(20)),
        "cpstItemCd": req(char(20)),
        "cpstQty": req(number(13, 2, positive=True)),
        **AUDIT,
    },
    "saveBhfCustomer": {
        "custNo": req(char(9)),
        "custTin": req(TIN),
        "custNm": req(char(60)),
        "adrs": opt(char(300)),
        "telNo": opt(char(20)),
        "email": opt(char(50)),
        "faxNo": opt(char(20)),
        "useYn": req(YES_NO),
        "remark": opt(char(1000)),
        **AUDIT,
    },
    "saveBhfUser": {
        "userId": req(char(20)),
        "userNm": req(char(60)),
        "pwd": req(char(255)),
        "adrs": opt(char(200)),
        "cntc": opt(char(20)),
        "authCd": opt(char(100)),
        "remark": opt(char(2000)),
        "useYn": req(YES_NO),
        **AUDIT,
    },
    "saveBhfInsurance": {
        "isrccCd": req(char(10)),
        "isrccNm": req(char(100)),
        "isrcRt": req(integer(high=100)),
        "useYn": req(YES_NO),
        **AUDIT,
    },
    "updateImportItem": {
        "taskCd": req(char(50)),
        "dclDe": req(char(8)),
        "itemSeq": req(COUNT),
        "hsCd": req(char(17)),
        "itemClsCd": req(char(10)),
        "itemCd": req(char(20)),
        "imptItemSttsCd": req(IMPORT_STATUS),
        "remark": opt(char(400)),
        "modrId": req(char(20)),
        "modrNm": req(char(60)),
    },
    "saveTrnsSalesOsdc": SALE,
    "insertTrnsPurchase": PURCHASE,
    "insertStockIO": STOCK_IO,
    "saveStockMaster": {"itemCd": req(char(20)), "rsdQty": req(QTY), **AUDIT},
}

_CREDENTIALS: dict[str, Field] = {
    "tin": opt(TIN),
    "bhfId": opt(BHF_ID),
    "cmcKey": opt(char(255)),
}


def field_problems(endpoint: str, body: Mapping[str, Any]) -> Problems:
    """(dotted path, message) for every field problem of ``body``; empty when it is valid.

    Besides each field on its own: ``totItemCnt`` equals the number of lines, and a sale
    (``rcptTyCd S``) credits nothing (``orgInvcNo 0``).
    """
    table = TABLES.get(endpoint)
    if table is None:
        return []
    if endpoint == "selectInitOsdcInfo":
        problems = check_object("", body, table)
    else:
        problems = check_object("", body, {**_CREDENTIALS, **table})
    lines_sent = body.get("itemList")
    count = body.get("totItemCnt")
    if isinstance(lines_sent, list) and isinstance(count, int) and count != len(lines_sent):
        problems.append(("totItemCnt", f"must equal the number of lines ({len(lines_sent)})"))
    if endpoint == "saveTrnsSalesOsdc" and body.get("rcptTyCd") == "S":
        if body.get("orgInvcNo") not in (0, None):
            problems.append(("orgInvcNo", "must be 0 for a sale (rcptTyCd S)"))
    return problems
