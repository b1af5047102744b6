"""Valid OSCU request bodies, built the way a careful client builds them.

Tests, the benchmark and the demo all need bodies the simulator accepts, and malformed
variants of them; building them here (amounts from :mod:`simulator.amounts` under the
run's scheme) keeps every caller consistent with the validator instead of hand-copying JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from simulator.amounts import expected_amounts
from simulator.options import DEFAULT_TAX_RATES, DEFAULT_VAT_SCHEME

_AUDIT = {"regrId": "sim", "regrNm": "Simulator", "modrId": "sim", "modrNm": "Simulator"}
#: A fixed, valid date-time so bodies are reproducible.
SAMPLE_D14 = "20240415153039"
SAMPLE_D8 = "20240415"


@dataclass(frozen=True, slots=True)
class Line:
    """One goods line: item code, quantity, unit price (gross or net per scheme), tax type."""

    item_cd: str
    qty: Decimal | int | str = 1
    prc: Decimal | int | str = "1160"
    tax_ty_cd: str = "B"
    item_cls_cd: str = "5020230100"
    item_nm: str = "Bottled water 500ml"


def _json_number(value: Decimal | int) -> float | int:
    """JSON numbers: ints stay ints, decimals become floats (exact for 2-place amounts)."""
    if isinstance(value, int):
        return value
    return int(value) if value == value.to_integral_value() else float(value)


def _jsonify(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _json_number(v) if isinstance(v, Decimal | int) else v for k, v in values.items()}


def item_body(
    item_cd: str, *, tax_ty_cd: str = "B", price: str = "1160", name: str = "Bottled water 500ml"
) -> dict[str, Any]:
    """A ``saveItem`` body for a finished good counted in units."""
    return {
        "itemCd": item_cd,
        "itemClsCd": "5020230100",
        "itemTyCd": "2",
        "itemNm": name,
        "orgnNatCd": "KE",
        "pkgUnitCd": "NT",
        "qtyUnitCd": "NO",
        "taxTyCd": tax_ty_cd,
        "dftPrc": _json_number(Decimal(price)),
        "isrcAplcbYn": "N",
        "useYn": "Y",
        **_AUDIT,
    }


def sale_body(
    invc_no: int,
    lines: Sequence[Line],
    *,
    trd_invc_no: str | None = None,
    rcpt_ty_cd: str = "S",
    org_invc_no: int = 0,
    cust_tin: str | None = None,
    scheme: str = DEFAULT_VAT_SCHEME,
    rates: Mapping[str, Decimal] = DEFAULT_TAX_RATES,
) -> dict[str, Any]:
    """A ``saveTrnsSalesOsdc`` body whose amounts add up under ``scheme``.

    ``rcpt_ty_cd="R"`` with ``org_invc_no`` makes a credit note (reason 06, refund date set).
    """
    raw_lines = [_line(seq, line, dcRt=0) for seq, line in enumerate(lines, start=1)]
    computed, header = expected_amounts({"itemList": raw_lines}, scheme, rates, stock=False)
    item_list = [
        {**line, **_jsonify({k: v for k, v in amounts.items()})}
        for line, amounts in zip(raw_lines, computed, strict=True)
    ]
    body: dict[str, Any] = {
        "trdInvcNo": trd_invc_no or f"TRD-{invc_no}",
        "invcNo": invc_no,
        "orgInvcNo": org_invc_no,
        "custTin": cust_tin,
        "custNm": None,
        "salesTyCd": "N",
        "rcptTyCd": rcpt_ty_cd,
        "pmtTyCd": "01",
        "salesSttsCd": "02",
        "cfmDt": SAMPLE_D14,
        "salesDt": SAMPLE_D8,
        "stockRlsDt": None,
        "cnclReqDt": None,
        "cnclDt": None,
        "rfdDt": SAMPLE_D14 if rcpt_ty_cd == "R" else None,
        "rfdRsnCd": "06" if rcpt_ty_cd == "R" else None,
        "totItemCnt": len(item_list),
        **_jsonify(header),
        "prchrAcptcYn": "N",
        "remark": None,
        **_AUDIT,
        "receipt": {
            "custTin": cust_tin,
            "custMblNo": None,
            "rcptPbctDt": SAMPLE_D14,
            "trdeNm": "Sim Shop",
            "adrs": "Nairobi",
            "topMsg": "Welcome",
            "btmMsg": "Thank you",
            "prchrAcptcYn": "N",
        },
        "itemList": item_list,
    }
    return body


def stock_io_body(
    sar_no: int,
    sar_ty_cd: str,
    lines: Sequence[Line],
    *,
    org_sar_no: int = 0,
    scheme: str = DEFAULT_VAT_SCHEME,
    rates: Mapping[str, Decimal] = DEFAULT_TAX_RATES,
) -> dict[str, Any]:
    """An ``insertStockIO`` body (``sarTyCd`` 01-06 in, 11-16 out) with consistent amounts."""
    raw_lines = [_line(seq, line, totDcAmt=0) for seq, line in enumerate(lines, start=1)]
    computed, header = expected_amounts({"itemList": raw_lines}, scheme, rates, stock=True)
    item_list = [
        {**line, **_jsonify(amounts)} for line, amounts in zip(raw_lines, computed, strict=True)
    ]
    return {
        "sarNo": sar_no,
        "orgSarNo": org_sar_no,
        "regTyCd": "M",
        "custTin": None,
        "custNm": None,
        "custBhfId": None,
        "sarTyCd": sar_ty_cd,
        "ocrnDt": SAMPLE_D8,
        "totItemCnt": len(item_list),
        **_jsonify(header),
        "remark": None,
        **_AUDIT,
        "itemList": item_list,
    }


def stock_master_body(item_cd: str, rsd_qty: Decimal | int | str) -> dict[str, Any]:
    """A ``saveStockMaster`` body."""
    return {"itemCd": item_cd, "rsdQty": _json_number(Decimal(rsd_qty)), **_AUDIT}


def _line(seq: int, line: Line, **discount: int) -> dict[str, Any]:
    """An item line before its amounts: sale lines carry ``dcRt``, stock lines ``totDcAmt``."""
    qty = _json_number(Decimal(line.qty))
    return {
        "itemSeq": seq,
        "itemClsCd": line.item_cls_cd,
        "itemCd": line.item_cd,
        "itemNm": line.item_nm,
        "pkgUnitCd": "NT",
        "pkg": qty,
        "qtyUnitCd": "NO",
        "qty": qty,
        "prc": _json_number(Decimal(line.prc)),
        **discount,
        "taxTyCd": line.tax_ty_cd,
    }
