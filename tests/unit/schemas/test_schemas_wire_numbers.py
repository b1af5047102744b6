"""Quoted numbers in a producer's payload reach KRA as JSON numbers (OSCU NUMBER fields).

Found by the simulator's own field reading: payloads posted as JSON text (intake, the CLI)
carried ``"prc": "116"`` through validation and onto the wire, quoted."""

from __future__ import annotations

import json
from decimal import Decimal

from schemas.completion import complete_body, dumps_body
from schemas.jobs import JobKind
from schemas.validation import payload_errors
from schemas.wire_numbers import with_json_numbers

TIN = "P051234567A"


def test_quoted_amounts_and_counts_leave_as_numbers() -> None:
    payload = {
        "trdInvcNo": "T-1",
        "salesTyCd": "N",
        "rcptTyCd": "S",
        "pmtTyCd": "01",
        "salesSttsCd": "02",
        "cfmDt": "20240415153039",
        "salesDt": "20240415",
        "prchrAcptcYn": "N",
        "receipt": {"rcptPbctDt": "20240415153039", "prchrAcptcYn": "N"},
        "itemList": [
            {
                "itemSeq": "1",
                "itemClsCd": "5020230100",
                "itemCd": "KE2NTNO0000001",
                "itemNm": "Water",
                "pkgUnitCd": "NT",
                "pkg": "2",
                "qtyUnitCd": "NO",
                "qty": "2",
                "prc": "116.00",
                "dcRt": "0",
                "taxTyCd": "B",
            },
        ],
    }
    body = json.loads(dumps_body(complete_body(JobKind.SALE, payload, tin=TIN, bhf_id="00")))
    line = body["itemList"][0]
    assert (line["itemSeq"], line["qty"], line["prc"], line["splyAmt"]) == (1, 2, 116, 232)
    assert body["totAmt"] == 232
    # text fields that look like numbers stay text
    assert (line["itemClsCd"], body["salesDt"], body["pmtTyCd"]) == ("5020230100", "20240415", "01")


def test_a_string_that_is_no_number_is_left_for_validation_to_refuse() -> None:
    assert with_json_numbers("saveItem", {"dftPrc": "abc"})["dftPrc"] == "abc"
    errors = payload_errors(
        "item",
        TIN,
        "00",
        {
            "itemCd": "KE2NTNO0000001",
            "itemClsCd": "5020230100",
            "itemTyCd": "2",
            "itemNm": "Water",
            "orgnNatCd": "KE",
            "pkgUnitCd": "NT",
            "qtyUnitCd": "NO",
            "taxTyCd": "B",
            "dftPrc": "abc",
            "isrcAplcbYn": "N",
            "useYn": "Y",
        },
    )
    assert [e.path for e in errors] == ["payload.dftPrc"]


def test_unknown_endpoint_and_numbers_already_numbers_are_untouched() -> None:
    assert with_json_numbers("noSuchEndpoint", {"x": "1"}) == {"x": "1"}
    assert with_json_numbers("saveStockMaster", {"rsdQty": Decimal("1.5")}) == {
        "rsdQty": Decimal("1.5")
    }
