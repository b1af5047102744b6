"""Request models: round trips, wire numbers, document rules and error paths."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import (
    LOOKUP_ENDPOINTS,
    REQUEST_MODELS,
    WRITE_ENDPOINTS,
    BhfUserRequest,
    CustomerLookupRequest,
    ImportItemUpdateRequest,
    PurchaseRequest,
    ReceiptType,
    SaleRequest,
    StockIORequest,
    StockIOType,
    VatScheme,
    fill_sale_amounts,
    fill_stock_io_amounts,
    format_errors,
)

RATES = {"A": Decimal(0), "B": Decimal(16), "C": Decimal(0), "D": Decimal(0), "E": Decimal(8)}
AUDIT = {"regrId": "admin", "regrNm": "Admin", "modrId": "admin", "modrNm": "Admin"}


def sale_line(seq: int = 1, **overrides: Any) -> dict[str, Any]:
    line = {
        "itemSeq": seq,
        "itemClsCd": "5059690800",
        "itemCd": "KE2NTNO0000001",
        "itemNm": "Bread 400g",
        "pkgUnitCd": "NT",
        "pkg": 1,
        "qtyUnitCd": "NO",
        "qty": 1,
        "prc": 1160,
        "dcRt": 0,
        "taxTyCd": "B",
    }
    return line | overrides


def sale_body(lines: int = 1, **overrides: Any) -> dict[str, Any]:
    body = {
        "tin": "P051234567A",
        "bhfId": "00",
        "trdInvcNo": "POS-000123",
        "invcNo": 7,
        "orgInvcNo": 0,
        "custTin": "A123456789Z",
        "custNm": "Wanjiku Stores",
        "salesTyCd": "N",
        "rcptTyCd": "S",
        "pmtTyCd": "06",
        "salesSttsCd": "02",
        "cfmDt": "20240415153039",
        "salesDt": "20240415",
        "prchrAcptcYn": "N",
        **AUDIT,
        "receipt": {
            "custTin": "A123456789Z",
            "rcptPbctDt": "20240415153039",
            "trdeNm": "Duka",
            "prchrAcptcYn": "N",
        },
        "itemList": [sale_line(i) for i in range(1, lines + 1)],
    }
    return fill_sale_amounts(body | overrides, VatScheme.SPLIT, RATES)


def credit_note(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"invcNo": 8, "rcptTyCd": "R", "orgInvcNo": 7, "rfdRsnCd": "06"}
    return sale_body(**(base | {"rfdDt": "20240416090000"} | overrides))


def stock_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "sarNo": 3,
        "orgSarNo": 0,
        "regTyCd": "M",
        "custTin": "A123456789Z",
        "sarTyCd": "11",
        "ocrnDt": "20240415",
        **AUDIT,
        "itemList": [
            {
                "itemSeq": 1,
                "itemCd": "KE2NTNO0000001",
                "itemClsCd": "5059690800",
                "itemNm": "Bread 400g",
                "pkgUnitCd": "NT",
                "pkg": 10,
                "qtyUnitCd": "NO",
                "qty": 10,
                "prc": 1160,
                "taxTyCd": "B",
            }
        ],
    }
    return fill_stock_io_amounts(body | overrides, VatScheme.SPLIT, RATES)


def error_paths(model: type[BaseModel], body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return [path for path, _ in format_errors(caught.value)]


def wire_json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json", by_alias=True, exclude_none=True))


# --- round trips and wire shape -------------------------------------------------------------


def test_sale_round_trips_through_json() -> None:
    sale = SaleRequest.model_validate(sale_body(lines=3))
    assert SaleRequest.model_validate_json(wire_json(sale)) == sale


def test_sale_amounts_and_numbers_are_json_numbers() -> None:
    text = wire_json(SaleRequest.model_validate(sale_body()))
    assert '"totAmt": 1160.0' in text
    assert '"taxblAmtB": 1000.0' in text
    assert '"invcNo": 7' in text
    assert '"orgInvcNo": 0' in text
    wire = json.loads(text)
    assert isinstance(wire["itemList"][0]["qty"], float)
    assert wire["rcptTyCd"] == "S"


def test_dump_uses_wire_names_only() -> None:
    wire = SaleRequest.model_validate(sale_body()).model_dump(mode="json", by_alias=True)
    assert {"trdInvcNo", "taxRtB", "itemList", "receipt", "regrNm"} <= set(wire)


def test_numeric_strings_are_read_as_integers() -> None:
    sale = SaleRequest.model_validate(sale_body(invcNo="7", orgInvcNo="0"))
    assert (sale.invcNo, sale.orgInvcNo) == (7, 0)
    assert '"invcNo": 7' in wire_json(sale)


def test_stock_io_round_trip_and_direction() -> None:
    stock = StockIORequest.model_validate(stock_body())
    assert StockIORequest.model_validate_json(wire_json(stock)) == stock
    assert stock.sarTyCd is StockIOType.SALE and stock.sarTyCd.direction == "out"


def test_body_identity_is_optional_but_checked() -> None:
    body = sale_body()
    del body["tin"], body["bhfId"]
    assert SaleRequest.model_validate(body).tin is None
    assert error_paths(SaleRequest, sale_body(bhfId="0")) == ["bhfId"]


def test_receipt_accepts_harmless_rpt_no_but_nothing_else() -> None:
    body = sale_body()
    body["receipt"]["rptNo"] = 1
    assert SaleRequest.model_validate(body).receipt.rptNo == 1
    body["receipt"]["surprise"] = "x"
    assert error_paths(SaleRequest, body) == ["receipt.surprise"]


def test_unknown_top_level_field_is_an_error() -> None:
    assert error_paths(SaleRequest, sale_body(cmcKey="secret")) == ["cmcKey"]


# --- document rules -------------------------------------------------------------------------


def test_credit_note_with_reason_date_and_original_is_valid() -> None:
    note = SaleRequest.model_validate(credit_note())
    assert note.rcptTyCd is ReceiptType.CREDIT_NOTE and note.orgInvcNo == 7


def test_credit_note_requires_reason_date_and_original() -> None:
    body = credit_note(orgInvcNo=0)
    del body["rfdRsnCd"], body["rfdDt"]
    assert sorted(error_paths(SaleRequest, body)) == ["orgInvcNo", "rfdDt", "rfdRsnCd"]


def test_sale_must_not_credit_anything() -> None:
    with pytest.raises(ValidationError) as caught:
        SaleRequest.model_validate(sale_body(orgInvcNo=5))
    assert format_errors(caught.value) == [("orgInvcNo", "must be 0 for a sale (rcptTyCd S)")]


def test_item_sequence_and_count_are_checked_at_their_paths() -> None:
    body = sale_body(lines=3)
    body["itemList"][2]["itemSeq"] = 5
    body["totItemCnt"] = 2
    with pytest.raises(ValidationError) as caught:
        SaleRequest.model_validate(body)
    assert format_errors(caught.value) == [
        ("itemList.2.itemSeq", "must be 3 (lines run 1..n)"),
        ("totItemCnt", "must equal the number of lines in itemList (3)"),
    ]


def test_empty_item_list_is_refused() -> None:
    assert "itemList" in error_paths(SaleRequest, sale_body(itemList=[], totItemCnt=1))


def test_field_length_and_required_errors_name_the_path() -> None:
    body = sale_body(lines=2)
    body["itemList"][1]["itemNm"] = "x" * 201
    del body["itemList"][0]["qty"]
    body["receipt"]["trdeNm"] = "A trade name too long"
    assert sorted(error_paths(SaleRequest, body)) == [
        "itemList.0.qty",
        "itemList.1.itemNm",
        "receipt.trdeNm",
    ]


def test_unknown_code_names_the_field() -> None:
    body = sale_body()
    body["itemList"][0]["taxTyCd"] = "F"
    body["pmtTyCd"] = "08"
    assert sorted(error_paths(SaleRequest, body)) == ["itemList.0.taxTyCd", "pmtTyCd"]


def test_quantity_must_be_positive() -> None:
    body = sale_body()
    body["itemList"][0]["qty"] = 0
    assert error_paths(SaleRequest, body) == ["itemList.0.qty"]


def test_bad_dates_are_refused_at_their_path() -> None:
    body = sale_body(cfmDt="20241301000000", salesDt="2024021")
    body["receipt"]["rcptPbctDt"] = "20240230000000"
    assert sorted(error_paths(SaleRequest, body)) == ["cfmDt", "receipt.rcptPbctDt", "salesDt"]


def test_org_sar_no_is_required_and_never_null() -> None:
    assert StockIORequest.model_validate(stock_body(orgSarNo="0")).orgSarNo == 0
    assert error_paths(StockIORequest, stock_body(orgSarNo=None)) == ["orgSarNo"]
    body = stock_body()
    del body["orgSarNo"]
    assert error_paths(StockIORequest, body) == ["orgSarNo"]


def test_stock_line_discount_is_an_amount() -> None:
    body = stock_body()
    body["itemList"][0]["dcRt"] = 5
    assert error_paths(StockIORequest, body) == ["itemList.0.dcRt"]


def test_audit_fields_are_required_on_writes() -> None:
    body = sale_body()
    del body["modrId"]
    assert error_paths(SaleRequest, body) == ["modrId"]


def test_import_update_takes_only_modifier_and_needs_remark_to_approve() -> None:
    body = {
        "taskCd": "2239078",
        "dclDe": "-1",
        "itemSeq": 1,
        "hsCd": "1231531231",
        "itemClsCd": "5022110801",
        "itemCd": "KE1NTXU0000001",
        "imptItemSttsCd": "3",
        "modrId": "admin",
        "modrNm": "Admin",
    }
    assert error_paths(ImportItemUpdateRequest, body) == ["remark"]
    assert ImportItemUpdateRequest.model_validate(body | {"remark": "ok"}).remark == "ok"
    assert error_paths(ImportItemUpdateRequest, body | {"remark": "ok", "regrId": "x"}) == [
        "regrId"
    ]


def test_branch_user_password_is_hidden_but_sent() -> None:
    body = {"userId": "u1", "userNm": "Cashier", "pwd": "hunter2", "useYn": "Y", **AUDIT}
    user = BhfUserRequest.model_validate(body)
    assert "hunter2" not in repr(user)
    assert "hunter2" not in str(user.model_dump())
    assert user.model_dump(mode="json")["pwd"] == "hunter2"
    assert error_paths(BhfUserRequest, body | {"pwd": "x" * 256}) == ["pwd"]


def test_customer_lookup_reads_both_pin_names() -> None:
    assert CustomerLookupRequest.model_validate({"custTin": "A123456789Z"}).custmTin == (
        "A123456789Z"
    )
    dumped = CustomerLookupRequest.model_validate({"custmTin": "A123456789Z"}).model_dump(
        by_alias=True, exclude_none=True
    )
    assert dumped == {"custmTin": "A123456789Z"}


def test_purchase_sample_from_the_spec_transcription_is_valid() -> None:
    line = {
        "itemSeq": 1,
        "itemCd": "KE1NTXU0000001",
        "itemClsCd": "5059690800",
        "itemNm": "test item 1",
        "pkgUnitCd": "NT",
        "pkg": 2,
        "qtyUnitCd": "U",
        "qty": 2,
        "prc": 3500,
        "splyAmt": 7000,
        "dcRt": 0,
        "dcAmt": 0,
        "taxblAmt": 7000,
        "taxTyCd": "B",
        "taxAmt": 1260,
        "totAmt": 7000,
    }
    zeros = {f"{kind}{t}": 0 for kind in ("taxblAmt", "taxRt", "taxAmt") for t in "ACDE"}
    body = {
        "invcNo": 1,
        "orgInvcNo": 0,
        "spplrTin": "A123456789Z",
        "regTyCd": "M",
        "pchsTyCd": "N",
        "rcptTyCd": "P",
        "pmtTyCd": "01",
        "pchsSttsCd": "02",
        "pchsDt": "20200127",
        "totItemCnt": 1,
        **zeros,
        "taxblAmtB": 7000,
        "taxRtB": 18,
        "taxAmtB": 1260,
        "totTaxblAmt": 7000,
        "totTaxAmt": 1260,
        "totAmt": 7000,
        **AUDIT,
        "itemList": [line],
    }
    purchase = PurchaseRequest.model_validate(body)
    assert PurchaseRequest.model_validate_json(wire_json(purchase)) == purchase


# --- the endpoint table ---------------------------------------------------------------------


def test_every_endpoint_has_a_model_and_is_either_write_or_lookup() -> None:
    assert set(REQUEST_MODELS) == WRITE_ENDPOINTS | LOOKUP_ENDPOINTS
    assert not WRITE_ENDPOINTS & LOOKUP_ENDPOINTS
    assert len(REQUEST_MODELS) == 21


@pytest.mark.parametrize(
    "endpoint, body",
    [
        ("selectInitOsdcInfo", {"tin": "P051234567A", "bhfId": "00", "dvcSrlNo": "dvc-1"}),
        ("selectCodeList", {"lastReqDt": "20180101000000"}),
        ("selectNoticeList", {"tin": "P051234567A", "bhfId": "00", "lastReqDt": "20240101000000"}),
        ("selectCustomer", {"custmTin": "A123456789Z"}),
        ("selectInvoiceDetails", {"invcNo": 12}),
        ("saveStockMaster", {"itemCd": "KE2NTNO0000001", "rsdQty": 90, **AUDIT}),
        (
            "saveItemComposition",
            {"itemCd": "KE2NTNO0000001", "cpstItemCd": "KE1NTKG0000002", "cpstQty": 2, **AUDIT},
        ),
        (
            "saveBhfCustomer",
            {"custNo": "C001", "custTin": "A123456789Z", "custNm": "Wanjiku", "useYn": "Y"} | AUDIT,
        ),
        (
            "saveBhfInsurance",
            {"isrccCd": "ISRC01", "isrccNm": "Jubilee", "isrcRt": 20, "useYn": "Y", **AUDIT},
        ),
        (
            "saveItem",
            {
                "itemCd": "KE2NTNO0000001",
                "itemClsCd": "5059690800",
                "itemTyCd": "2",
                "itemNm": "Bread 400g",
                "orgnNatCd": "KE",
                "pkgUnitCd": "NT",
                "qtyUnitCd": "NO",
                "taxTyCd": "B",
                "dftPrc": 60,
                "isrcAplcbYn": "N",
                "useYn": "Y",
                **AUDIT,
            },
        ),
    ],
)
def test_endpoint_models_accept_valid_bodies(endpoint: str, body: dict[str, Any]) -> None:
    model = REQUEST_MODELS[endpoint].model_validate(body)
    again = type(model).model_validate_json(wire_json(model))
    assert again == model


def test_init_requires_identity_in_the_body() -> None:
    assert sorted(error_paths(REQUEST_MODELS["selectInitOsdcInfo"], {"dvcSrlNo": "d"})) == [
        "bhfId",
        "tin",
    ]


def test_lookup_date_is_validated() -> None:
    assert error_paths(REQUEST_MODELS["selectItemList"], {"lastReqDt": "2018010100000"}) == [
        "lastReqDt"
    ]
