"""Response parsing: every front door's spelling reads the same, and secrets stay hidden."""

from __future__ import annotations

import json

import pytest

from schemas import Envelope, InitInfo, InvoiceDetails, ResultCode, SaleSignature

SIGNED = {
    "curRcptNo": 1,
    "totRcptNo": 1,
    "intrlData": "EAHSAV6ECUUXSY6PCCJYAUP6MI",
    "rcptSign": "QUII27MATATSHFRB",
    "sdcDateTime": "20200226194650",
}
INFO = {
    "tin": "P051234567A",
    "taxprNm": "Duka Ltd",
    "bhfId": "00",
    "bhfOpenDt": "20210101",
    "hqYn": "Y",
    "dvcId": 9999911300000001,
    "sdcId": "KRACU0400001224",
    "mrcNo": "WIS01000150",
    "cmcKey": "C0FFEE0123456789ABCDEF0123456789",
}


def test_spec_sample_with_blank_padded_keys() -> None:
    raw = {
        "resultCd": "000",
        "resultMsg": "It is succeeded",
        "resultDt": "20200226194650",
        "data": {
            "curRcptNo ": "1",
            "totRcptNo ": 1,
            " intrlData": "EAHSAV6ECUUXSY6PCCJYAUP6MI",
            "rcptSign": "QUII27MATATSHFRB",
            "sdcDateTime": "20200226194650",
        },
    }
    envelope = Envelope.parse(raw)
    assert envelope.is_success and envelope.resultDt == "20200226194650"
    signature = SaleSignature.from_data(envelope.data)
    assert signature == SaleSignature.model_validate(SIGNED)
    assert signature.curRcptNo == 1


def test_blank_keys_are_stripped_at_every_depth_even_without_envelope_parse() -> None:
    assert SaleSignature.model_validate({f"{k} ": v for k, v in SIGNED.items()}).totRcptNo == 1


def test_vscu_spellings_of_the_signature() -> None:
    vscu = {
        "rcptNo": "3",
        "totRcptNo": "9",
        "intrlData": "EAHSAV6ECUUXSY6PCCJYAUP6MI",
        "rcptSign": "QUII27MATATSHFRB",
        "vsdcRcptPbctDate": "20240415153039",
        "sdcId": "SDC010000001",
        "mrcNo": "WIS01000150",
    }
    signature = SaleSignature.model_validate(vscu)
    assert (signature.curRcptNo, signature.totRcptNo) == (3, 9)
    assert signature.sdcDateTime == "20240415153039"
    assert signature.sdcId == "SDC010000001"


def test_signature_without_its_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="rcptSign"):
        SaleSignature.from_data({k: v for k, v in SIGNED.items() if k != "rcptSign"})


@pytest.mark.parametrize("spelling", ["000", "0", "00", "0000", 0, " 000 "])
def test_success_spellings_fold_to_000(spelling: object) -> None:
    envelope = Envelope.parse({"resultCd": spelling, "resultMsg": "Successful", "data": None})
    assert envelope.resultCd == ResultCode.SUCCESS
    assert envelope.is_success


def test_no_search_result_is_an_empty_success() -> None:
    envelope = Envelope.parse({"resultCd": 1, "resultMsg": "There is no search result"})
    assert envelope.resultCd == "001" and envelope.is_success


def test_errors_are_kept_as_sent() -> None:
    envelope = Envelope.parse(
        {"resultCd": "910", "resultMsg": "Invalid taxblAmt on item: 1", "data": None}
    )
    assert envelope.resultCd == "910" and not envelope.is_success
    assert envelope.resultMsg.startswith("Invalid taxblAmt")


def test_json_text_and_bytes_are_read() -> None:
    text = json.dumps({"resultCd": "000", "resultMsg": None, "resultDt": "20240101000000"})
    assert Envelope.parse(text).resultMsg == ""
    assert Envelope.parse(text.encode()).resultDt == "20240101000000"


@pytest.mark.parametrize("raw", ["not json", "[]", {"data": {}}, None, b"{}"])
def test_no_envelope_is_a_value_error(raw: object) -> None:
    with pytest.raises(ValueError):
        Envelope.parse(raw)


def test_gavaconnect_wrapper_is_unwrapped() -> None:
    raw = {
        "responseHeader": {"responseCode": 200, "debugMessage": "Success"},
        "responseBody": {"resultCd": "0000", "resultMsg": "Successful", "data": {"info": INFO}},
    }
    envelope = Envelope.parse(raw)
    assert envelope.is_success
    assert InitInfo.from_data(envelope.data).sdcId == "KRACU0400001224"


def test_gavaconnect_rejection_keeps_its_code_and_message() -> None:
    raw = {
        "responseHeader": {"responseCode": 400, "debugMessage": "Invalid invcNo sequence"},
        "responseBody": None,
    }
    envelope = Envelope.parse(raw)
    assert (envelope.resultCd, envelope.resultMsg) == ("400", "Invalid invcNo sequence")
    assert not envelope.is_success and envelope.data is None


def test_gateway_fault_envelope() -> None:
    raw = {
        "header": {"responseMessage": "Unauthorised-Invalid Access Token", "responseCode": 401},
        "body": {},
    }
    envelope = Envelope.parse(raw)
    assert envelope.resultCd == "401" and "Invalid Access Token" in envelope.resultMsg


def test_init_info_hides_the_key() -> None:
    envelope = Envelope.parse({"resultCd": "000", "resultMsg": "ok", "data": {"info": INFO}})
    info = InitInfo.from_data(envelope.data)
    assert info.cmcKey.get_secret_value() == INFO["cmcKey"]
    assert INFO["cmcKey"] not in repr(info)
    assert INFO["cmcKey"] not in str(info)
    assert INFO["cmcKey"] not in repr(envelope)
    assert info.dvcId == "9999911300000001"


def test_init_info_reads_the_spec_table_spelling_and_a_root_key() -> None:
    info = {k: v for k, v in INFO.items() if k not in ("sdcId", "cmcKey")} | {"sdicId": "KRACU01"}
    raw = {"resultCd": "000", "resultMsg": "ok", "cmcKey": "ROOTKEY", "data": {"info": info}}
    parsed = InitInfo.from_data(Envelope.parse(raw).data)
    assert parsed.sdcId == "KRACU01"
    assert parsed.cmcKey.get_secret_value() == "ROOTKEY"


def test_init_info_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="cmcKey"):
        InitInfo.from_data({"info": {"tin": "P051234567A"}})


def test_invoice_details_recover_the_signature() -> None:
    data = {
        "salesList": [
            {
                "invcNo": "12",
                "orgInvcNo": 0,
                "trdInvcNo": 4711,
                "custTin": "A123456789Z",
                "rcptTyCd": "S",
                "totAmt": 1160,
                "receipt": {
                    "curRcptNo": 5,
                    "totRcptNo": 11,
                    "intrlData": "EAHSAV6ECUUXSY6PCCJYAUP6MI",
                    "rcptSign": "QUII27MATATSHFRB",
                    "sdcDateTime": "2024-04-15 15:30:39.0",
                },
            }
        ]
    }
    envelope = Envelope.parse({"resultCd": "000", "resultMsg": "ok", "data": data})
    details = InvoiceDetails.from_data(envelope.data)
    assert details is not None
    assert (details.invcNo, details.custTin, details.rcptTyCd) == (12, "A123456789Z", "S")
    assert details.trdInvcNo == "4711"
    assert details.signature is not None
    assert details.signature.sdcDateTime == "20240415153039"
    assert (details.signature.curRcptNo, details.signature.totRcptNo) == (5, 11)
    assert details.sale["totAmt"] == 1160


@pytest.mark.parametrize("data", [None, {}, {"salesList": []}, {"salesList": None}])
def test_invoice_details_absent(data: object) -> None:
    assert InvoiceDetails.from_data(data) is None


def test_unrecognised_signing_time_is_kept_not_refused() -> None:
    signature = SaleSignature.model_validate(SIGNED | {"sdcDateTime": "15/04/2024 15:30"})
    assert signature.sdcDateTime == "15/04/2024 15:30"


def test_invoice_details_without_a_readable_signature_still_report_the_sale() -> None:
    details = InvoiceDetails.from_data({"salesList": [{"invcNo": 3, "receipt": {"curRcptNo": 1}}]})
    assert details is not None
    assert details.invcNo == 3 and details.signature is None
