"""OscuClient against httpx.MockTransport handlers: one test per row of outcome.py's table,
the headers/body contract, the 401 token dance, and secret hygiene."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import worker.oscu
from schemas.settings import OscuSettings
from worker.oscu import (
    ENDPOINTS,
    CallOutcome,
    ClientCredentialsTokenProvider,
    DeviceCredentials,
    OscuClient,
    OutcomeKind,
)

K = OutcomeKind
BASE = "http://127.0.0.1:9/etims-api"
TOKEN_URL = "http://127.0.0.1:9/v1/token/generate"
CMC_KEY = "cmc-SECRET-7f3a9b0c1d2e4f5a6b7c8d9e"
CONSUMER_KEY = "consumer-KEY-abc123"
CONSUMER_SECRET = "consumer-SECRET-xyz789"
TOKENS = ["bearer-TOKEN-one-111", "bearer-TOKEN-two-222", "bearer-TOKEN-three-333"]
DEVICE = DeviceCredentials("P051234567A", "00", SecretStr(CMC_KEY))
SECRETS = [CMC_KEY, CONSUMER_KEY, CONSUMER_SECRET, *TOKENS]

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(code: Any, data: Any = None, msg: str = "It is succeeded") -> dict[str, Any]:
    return {"resultCd": code, "resultMsg": msg, "resultDt": "20250101120000", "data": data}


def answer(code: Any, status: int = 200, **kw: Any) -> Handler:
    return lambda request: httpx.Response(status, json=envelope(code, **kw))


@pytest.fixture
def make_client() -> Iterator[Callable[..., OscuClient]]:
    clients: list[OscuClient] = []

    def make(handler: Handler, **kw: Any) -> OscuClient:
        client = OscuClient(BASE, transport=httpx.MockTransport(handler), **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class TokenServer:
    """A token endpoint handler that hands out TOKENS in order and counts fetches."""

    def __init__(self) -> None:
        self.fetches = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.url.params["grant_type"] == "client_credentials"
        with self.lock:
            token = TOKENS[min(self.fetches, len(TOKENS) - 1)]
            self.fetches += 1
        return httpx.Response(200, json={"access_token": token, "expires_in": "3599"})


def provider(server: TokenServer) -> ClientCredentialsTokenProvider:
    return ClientCredentialsTokenProvider(
        TOKEN_URL,
        SecretStr(CONSUMER_KEY),
        SecretStr(CONSUMER_SECRET),
        transport=httpx.MockTransport(server),
    )


# -- result codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("000", K.ACCEPTED),
        ("001", K.EMPTY),
        ("894", K.TRANSIENT),
        ("896", K.TRANSIENT),
        ("899", K.REJECTED),
        ("900", K.AUTH),
        ("901", K.AUTH),
        ("902", K.AUTH),
        ("903", K.AUTH),
        ("905", K.AUTH),
        ("910", K.REJECTED),
        ("911", K.REJECTED),
        ("912", K.REJECTED),
        ("921", K.DUPLICATE),
        ("922", K.SEQUENCE),
        ("990", K.RATE_LIMITED),
        ("991", K.TRANSIENT),
        ("992", K.TRANSIENT),
        ("993", K.TRANSIENT),
        ("994", K.DUPLICATE),
        ("995", K.TRANSIENT),
        ("999", K.TRANSIENT),
        ("777", K.REJECTED),
    ],
)
def test_each_result_code(make_client: Any, code: str, kind: OutcomeKind) -> None:
    outcome = make_client(answer(code, msg="m")).save_sale(DEVICE, {"invcNo": 1})
    assert outcome.kind is kind
    assert outcome.result_code == code
    assert outcome.message == "m"
    assert outcome.result_dt == "20250101120000"
    assert outcome.http_status == 200
    assert outcome.may_have_reached_kra is True
    assert outcome.endpoint == "saveTrnsSalesOsdc"
    assert outcome.latency_s > 0


@pytest.mark.parametrize("spelling", ["0", "00", "0000", 0, "000"])
def test_success_spellings(make_client: Any, spelling: Any) -> None:
    receipt = {"curRcptNo": 7, "rcptSign": "ABCD"}
    outcome = make_client(answer(spelling, data=receipt)).save_sale(DEVICE, {"invcNo": 1})
    assert (outcome.kind, outcome.result_code, outcome.data) == (K.ACCEPTED, "000", receipt)
    assert outcome.ok


def test_990_passes_retry_after_on(make_client: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope("990"), headers={"Retry-After": "5"})

    outcome = make_client(handler).select_code_list(DEVICE, "20180101000000")
    assert (outcome.kind, outcome.retry_after_s) == (K.RATE_LIMITED, 5.0)


# -- HTTP statuses ------------------------------------------------------------------------------


def test_429_with_retry_after_seconds(make_client: Any) -> None:
    client = make_client(lambda r: httpx.Response(429, text="slow", headers={"Retry-After": "7"}))
    outcome = client.save_item(DEVICE, {"itemCd": "X"})
    assert (outcome.kind, outcome.retry_after_s, outcome.http_status) == (K.RATE_LIMITED, 7.0, 429)


def test_429_with_retry_after_http_date(make_client: Any) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    client = make_client(lambda r: httpx.Response(429, headers={"Retry-After": when}))
    outcome = client.save_item(DEVICE, {"itemCd": "X"})
    assert outcome.kind is K.RATE_LIMITED
    assert outcome.retry_after_s is not None and 110 < outcome.retry_after_s <= 120


def test_429_without_retry_after(make_client: Any) -> None:
    outcome = make_client(lambda r: httpx.Response(429)).save_item(DEVICE, {})
    assert (outcome.kind, outcome.retry_after_s) == (K.RATE_LIMITED, None)


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("write", [True, False])
def test_gateway_errors_are_transient(make_client: Any, status: int, write: bool) -> None:
    client = make_client(lambda r: httpx.Response(status, text="<html>Bad Gateway</html>"))
    outcome = client.call("saveItem", {}, device=DEVICE, write=write)
    assert (outcome.kind, outcome.http_status) == (K.TRANSIENT, status)
    assert outcome.may_have_reached_kra is True


def test_500_html_on_a_write_is_unknown(make_client: Any) -> None:
    client = make_client(lambda r: httpx.Response(500, text="<html>Internal Error</html>"))
    outcome = client.save_sale(DEVICE, {"invcNo": 1})
    assert (outcome.kind, outcome.http_status, outcome.error) == (K.UNKNOWN, 500, "BadEnvelope")
    assert outcome.may_have_reached_kra is True


def test_500_html_on_a_lookup_is_transient(make_client: Any) -> None:
    client = make_client(lambda r: httpx.Response(500, text="<html>Internal Error</html>"))
    outcome = client.select_invoice_details(DEVICE, 12)
    assert (outcome.kind, outcome.http_status) == (K.TRANSIENT, 500)


@pytest.mark.parametrize(("write", "kind"), [(True, K.UNKNOWN), (False, K.TRANSIENT)])
def test_non_json_200(make_client: Any, write: bool, kind: OutcomeKind) -> None:
    client = make_client(lambda r: httpx.Response(200, text="OK"))
    outcome = client.call("selectItemList", {}, device=DEVICE, write=write)
    assert (outcome.kind, outcome.result_code, outcome.error) == (kind, None, "BadEnvelope")


def test_json_200_without_result_code_on_a_write_is_unknown(make_client: Any) -> None:
    outcome = make_client(lambda r: httpx.Response(200, json={"status": "ok"})).save_sale(
        DEVICE, {}
    )
    assert outcome.kind is K.UNKNOWN


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_without_token_provider_are_auth(make_client: Any, status: int) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"header": {"responseCode": status}, "body": {}})

    outcome = make_client(handler).save_item(DEVICE, {})
    assert (outcome.kind, outcome.http_status, len(calls)) == (K.AUTH, status, 1)


def test_http_400_with_001_body_is_empty(make_client: Any) -> None:
    client = make_client(answer("001", status=400, msg="There is no search result"))
    outcome = client.select_stock_move_list(DEVICE, "20180101000000")
    assert (outcome.kind, outcome.http_status, outcome.result_code) == (K.EMPTY, 400, "001")


def test_http_400_free_text_is_rejected(make_client: Any) -> None:
    client = make_client(lambda r: httpx.Response(400, text="modrId may not be empty"))
    assert client.save_branch_user(DEVICE, {}).kind is K.REJECTED


def test_http_404_is_rejected(make_client: Any) -> None:
    assert make_client(lambda r: httpx.Response(404, text="nope")).save_item(DEVICE, {}).kind is (
        K.REJECTED
    )


def test_whitespace_in_response_keys(make_client: Any) -> None:
    body = {" resultCd ": "000", " resultMsg": "ok", "resultDt ": "20250101", " data ": {"a": 1}}
    outcome = make_client(lambda r: httpx.Response(200, json=body)).save_sale(DEVICE, {})
    assert (outcome.kind, outcome.data, outcome.result_dt) == (K.ACCEPTED, {"a": 1}, "20250101")


def test_gavaconnect_envelope_success(make_client: Any) -> None:
    info = {"tin": "P051234567A", "sdcId": "KRACU0400001224", "cmcKey": "NEWKEY"}
    body = {
        "responseHeader": {"responseCode": 200, "customerMessage": "Successful"},
        "responseBody": {"resultCd": "0000", "resultMsg": "Successful", "data": {"info": info}},
    }
    outcome = make_client(lambda r: httpx.Response(200, json=body)).init_device(
        "P051234567A", "00", "SERIAL-1"
    )
    assert (outcome.kind, outcome.result_code) == (K.ACCEPTED, "000")
    assert outcome.data == {"info": info}
    assert "NEWKEY" not in str(outcome)


def test_gavaconnect_embedded_400_in_http_200_is_rejected(make_client: Any) -> None:
    body = {"responseHeader": {"responseCode": 400, "debugMessage": "orgnNatCd cannot be null"}}
    outcome = make_client(lambda r: httpx.Response(200, json=body)).save_item(DEVICE, {})
    assert (outcome.kind, outcome.message) == (K.REJECTED, "orgnNatCd cannot be null")
    assert outcome.extra["embedded_status"] == 400


def test_gavaconnect_gateway_504_is_transient(make_client: Any) -> None:
    body = {"header": {"responseCode": 504, "responseMessage": "Gateway Timeout"}, "body": {}}
    outcome = make_client(lambda r: httpx.Response(504, json=body)).save_sale(DEVICE, {})
    assert outcome.kind is K.TRANSIENT


# -- transport failures through the mock --------------------------------------------------------


def raising(exc_cls: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_cls("boom", request=request)

    return handler


@pytest.mark.parametrize("exc_cls", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
@pytest.mark.parametrize("write", [True, False])
def test_not_sent_is_transient(make_client: Any, exc_cls: Any, write: bool) -> None:
    outcome = make_client(raising(exc_cls)).call("saveItem", {}, device=DEVICE, write=write)
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    assert (outcome.error, outcome.http_status) == (exc_cls.__name__, None)


@pytest.mark.parametrize(
    "exc_cls", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError]
)
@pytest.mark.parametrize(("write", "kind"), [(True, K.UNKNOWN), (False, K.TRANSIENT)])
def test_maybe_sent(make_client: Any, exc_cls: Any, write: bool, kind: OutcomeKind) -> None:
    outcome = make_client(raising(exc_cls)).call("saveItem", {}, device=DEVICE, write=write)
    assert (outcome.kind, outcome.may_have_reached_kra, outcome.error) == (
        kind,
        True,
        exc_cls.__name__,
    )


def test_broken_content_encoding_is_a_bad_envelope(make_client: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not gzip", headers={"Content-Encoding": "gzip"})

    outcome = make_client(handler).save_sale(DEVICE, {})
    assert (outcome.kind, outcome.error) == (K.UNKNOWN, "DecodingError")


# -- request shape ------------------------------------------------------------------------------

#: Every endpoint method with arguments, and its R/W flag per the spec's endpoint list.
METHODS: list[tuple[str, tuple[Any, ...], str, bool]] = [
    ("init_device", ("P051234567A", "00", "SERIAL-1"), "selectInitOsdcInfo", True),
    ("select_code_list", (DEVICE, "20180101000000"), "selectCodeList", False),
    ("select_customer", (DEVICE, "A123456789Z"), "selectCustomer", False),
    ("select_notice_list", (DEVICE, "20180101000000"), "selectNoticeList", False),
    ("select_item_class_list", (DEVICE, "20180101000000"), "selectItemClsList", False),
    ("save_item", (DEVICE, {"itemCd": "KE2NTBA0000001"}), "saveItem", True),
    ("select_item_list", (DEVICE, "20180101000000"), "selectItemList", False),
    ("save_item_composition", (DEVICE, {"itemCd": "X"}), "saveItemComposition", True),
    ("select_branch_list", (DEVICE, "20180101000000"), "selectBhfList", False),
    ("save_branch_customer", (DEVICE, {"custNo": "1"}), "saveBhfCustomer", True),
    ("save_branch_user", (DEVICE, {"userId": "u"}), "saveBhfUser", True),
    ("save_branch_insurance", (DEVICE, {"isrccCd": "I"}), "saveBhfInsurance", True),
    ("select_import_item_list", (DEVICE, "20180101000000"), "selectImportItemList", False),
    ("update_import_item", (DEVICE, {"taskCd": "T"}), "updateImportItem", True),
    ("save_sale", (DEVICE, {"invcNo": 1}), "saveTrnsSalesOsdc", True),
    ("select_invoice_details", (DEVICE, 1), "selectInvoiceDetails", False),
    (
        "select_purchase_sales_list",
        (DEVICE, "20180101000000"),
        "selectTrnsPurchaseSalesList",
        False,
    ),
    ("insert_purchase", (DEVICE, {"invcNo": 1}), "insertTrnsPurchase", True),
    ("select_stock_move_list", (DEVICE, "20180101000000"), "selectStockMoveList", False),
    ("insert_stock_io", (DEVICE, {"sarNo": 1}), "insertStockIO", True),
    ("save_stock_master", (DEVICE, {"itemCd": "X", "rsdQty": 1}), "saveStockMaster", True),
]


def test_endpoints_table_matches_the_methods() -> None:
    assert {endpoint: write for _, _, endpoint, write in METHODS} == ENDPOINTS
    assert len(ENDPOINTS) == 21


@pytest.mark.parametrize(("method", "args", "endpoint", "write"), METHODS, ids=lambda v: str(v))
def test_each_method_posts_to_its_endpoint_with_the_right_headers(
    make_client: Any, method: str, args: tuple[Any, ...], endpoint: str, write: bool
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    outcome = getattr(make_client(handler), method)(*args)
    assert outcome.kind is K.ACCEPTED and outcome.endpoint == endpoint
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == f"/etims-api/{endpoint}"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert (body["tin"], body["bhfId"]) == ("P051234567A", "00")
    assert "cmcKey" not in body
    if endpoint == "selectInitOsdcInfo":
        assert body == {"tin": "P051234567A", "bhfId": "00", "dvcSrlNo": "SERIAL-1"}
        for name in ("tin", "bhfId", "cmcKey"):
            assert name not in request.headers
    else:
        assert request.headers["tin"] == "P051234567A"
        assert request.headers["bhfId"] == "00"
        assert request.headers["cmcKey"] == CMC_KEY
    assert "authorization" not in request.headers
    assert "apigee_app_id" not in request.headers


@pytest.mark.parametrize(("method", "args", "endpoint", "write"), METHODS, ids=lambda v: str(v))
def test_each_method_carries_its_write_flag(
    make_client: Any, method: str, args: tuple[Any, ...], endpoint: str, write: bool
) -> None:
    """A read timeout tells the flag apart: UNKNOWN for writes, TRANSIENT for lookups."""
    outcome = getattr(make_client(raising(httpx.ReadTimeout)), method)(*args)
    assert outcome.kind is (K.UNKNOWN if write else K.TRANSIENT)


def test_body_keeps_callers_tin_and_bhf_id(make_client: Any) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json=envelope("000"))

    make_client(handler).save_item(DEVICE, {"tin": "P000000000X", "bhfId": "01", "n": 1})
    assert json.loads(seen[0]) == {"tin": "P000000000X", "bhfId": "01", "n": 1}


def test_decimal_amounts_and_trailing_slash(make_client: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    client = OscuClient(BASE + "/", transport=httpx.MockTransport(handler))
    with client:
        client.save_sale(DEVICE, {"totAmt": Decimal("1160.00"), "taxAmt": Decimal("160.05")})
    assert seen[0].url.path == "/etims-api/saveTrnsSalesOsdc"
    assert json.loads(seen[0].content)["taxAmt"] == 160.05


def test_missing_device_is_a_programming_error(make_client: Any) -> None:
    with pytest.raises(ValueError, match="needs device credentials"):
        make_client(answer("000")).call("saveItem", {}, device=None, write=True)


def test_bearer_and_apigee_headers_on_every_call_including_init(make_client: Any) -> None:
    server = TokenServer()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    client = make_client(handler, token_provider=provider(server), apigee_app_id="app-uuid")
    client.init_device("P051234567A", "00", "SERIAL-1")
    client.save_sale(DEVICE, {"invcNo": 1})
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {TOKENS[0]}"
        assert request.headers["apigee_app_id"] == "app-uuid"
    assert "cmcKey" not in seen[0].headers and seen[1].headers["cmcKey"] == CMC_KEY
    assert server.fetches == 1


# -- 401 and the token --------------------------------------------------------------------------


def test_401_refetches_the_token_once_then_succeeds(make_client: Any) -> None:
    server = TokenServer()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == f"Bearer {TOKENS[0]}":
            return httpx.Response(401, json={"header": {"responseCode": 401}, "body": {}})
        return httpx.Response(200, json=envelope("000"))

    outcome = make_client(handler, token_provider=provider(server)).save_sale(DEVICE, {})
    assert outcome.kind is K.ACCEPTED
    assert seen == [f"Bearer {TOKENS[0]}", f"Bearer {TOKENS[1]}"]
    assert server.fetches == 2


def test_401_twice_is_auth_after_exactly_one_refetch(make_client: Any) -> None:
    server = TokenServer()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401, json={"fault": {"faultstring": "Invalid access token"}})

    outcome = make_client(handler, token_provider=provider(server)).save_sale(DEVICE, {})
    assert (outcome.kind, outcome.http_status) == (K.AUTH, 401)
    assert seen == [f"Bearer {TOKENS[0]}", f"Bearer {TOKENS[1]}"]
    assert server.fetches == 2


def test_embedded_401_in_http_200_also_refetches(make_client: Any) -> None:
    server = TokenServer()
    statuses = iter([401, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(statuses) == 401:
            body = {"responseHeader": {"responseCode": 401, "customerMessage": "Unauthorised"}}
            return httpx.Response(200, json=body)
        return httpx.Response(200, json=envelope("000"))

    assert make_client(handler, token_provider=provider(server)).save_sale(DEVICE, {}).ok
    assert server.fetches == 2


def test_403_does_not_refetch(make_client: Any) -> None:
    server = TokenServer()
    outcome = make_client(lambda r: httpx.Response(403), token_provider=provider(server)).save_item(
        DEVICE, {}
    )
    assert (outcome.kind, server.fetches) == (K.AUTH, 1)


def test_token_endpoint_refusal_is_auth_and_nothing_is_sent(make_client: Any) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=envelope("000"))

    refusing = ClientCredentialsTokenProvider(
        TOKEN_URL,
        SecretStr(CONSUMER_KEY),
        SecretStr(CONSUMER_SECRET),
        transport=httpx.MockTransport(lambda r: httpx.Response(401, text=CONSUMER_SECRET)),
    )
    outcome = make_client(handler, token_provider=refusing).save_sale(DEVICE, {})
    assert (outcome.kind, outcome.may_have_reached_kra, outcome.error) == (
        K.AUTH,
        False,
        "TokenRejected",
    )
    assert sent == []
    refusing.close()


def test_token_endpoint_down_is_transient_not_sent(make_client: Any) -> None:
    down = ClientCredentialsTokenProvider(
        TOKEN_URL,
        SecretStr(CONSUMER_KEY),
        SecretStr(CONSUMER_SECRET),
        transport=httpx.MockTransport(raising(httpx.ConnectError)),
    )
    outcome = make_client(answer("000"), token_provider=down).save_sale(DEVICE, {})
    assert (outcome.kind, outcome.may_have_reached_kra) == (K.TRANSIENT, False)
    down.close()


def test_threads_share_one_token_fetch(make_client: Any) -> None:
    server = TokenServer()
    client = make_client(answer("000"), token_provider=provider(server))
    results: list[CallOutcome] = []

    def work() -> None:
        for _ in range(10):
            results.append(client.save_sale(DEVICE, {"invcNo": 1}))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and all(o.kind is K.ACCEPTED for o in results)
    assert server.fetches == 1


# -- settings, exports, logging and secrets -----------------------------------------------------


def test_from_settings_with_oauth() -> None:
    server = TokenServer()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/token"):
            return server(request)
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    settings = OscuSettings(
        token_url=TOKEN_URL,
        consumer_key=SecretStr(CONSUMER_KEY),
        consumer_secret=SecretStr(CONSUMER_SECRET),
        apigee_app_id="app-uuid",
        read_timeout_s=12.0,
    )
    with OscuClient.from_settings(BASE, settings, transport=httpx.MockTransport(handler)) as c:
        assert c.save_sale(DEVICE, {}).ok
    assert seen[0].headers["authorization"] == f"Bearer {TOKENS[0]}"
    assert seen[0].headers["apigee_app_id"] == "app-uuid"
    assert seen[0].extensions["timeout"]["read"] == 12.0


def test_from_settings_without_oauth_sends_no_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    with OscuClient.from_settings(
        BASE, OscuSettings(), transport=httpx.MockTransport(handler)
    ) as c:
        c.save_sale(DEVICE, {})
    assert "authorization" not in seen[0].headers


def test_from_settings_token_url_needs_credentials() -> None:
    with pytest.raises(ValueError, match="consumer_key"):
        OscuClient.from_settings(BASE, OscuSettings(token_url=TOKEN_URL))


def test_exported_members() -> None:
    """httpx tests/test_exported_members.py: __all__ is exactly what the package offers."""
    exported = set(worker.oscu.__all__)
    assert exported == {
        name for name in dir(worker.oscu) if not name.startswith("_") and name[0].isupper()
    } | {"map_transport_errors"}
    for name in exported:
        assert getattr(worker.oscu, name) is not None


def test_one_log_line_per_call(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="etims_relay.oscu")
    client = make_client(answer("910"))
    client.save_sale(DEVICE, {"invcNo": 1})
    records = [r for r in caplog.records if r.name == "etims_relay.oscu"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert "saveTrnsSalesOsdc" in message and "rejected" in message and "code=910" in message
    assert "http=200" in message and "latency_ms=" in message
    assert record.__dict__["oscu_outcome"] == "rejected"


def test_no_secret_in_logs_reprs_or_outcomes(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Drive every path that produces text, with servers that echo secrets back at us."""
    caplog.set_level(logging.DEBUG)
    server = TokenServer()
    echoes = iter(range(1000))

    def handler(request: httpx.Request) -> httpx.Response:
        n = next(echoes)
        auth = request.headers["authorization"]
        echo = f"bad key {request.headers.get('cmcKey')} for {auth}"
        if n == 0:
            return httpx.Response(401, json={"fault": {"faultstring": f"invalid token {auth}"}})
        if n == 1:
            return httpx.Response(200, json=envelope("901", msg=echo))
        if n == 2:
            body = {"responseHeader": {"responseCode": 400, "debugMessage": echo}}
            return httpx.Response(200, json=body)
        if n == 3:
            raise httpx.ReadTimeout(echo, request=request)
        if n == 4:
            info = {"cmcKey": CMC_KEY, "access_token": TOKENS[1]}
            return httpx.Response(200, json=envelope("000", data={"info": info}), headers={})
        return httpx.Response(500, text=echo)

    token_provider = provider(server)
    client = make_client(handler, token_provider=token_provider, apigee_app_id="app")
    outcomes = [client.save_sale(DEVICE, {"invcNo": n}) for n in range(4)]
    outcomes.append(client.init_device("P051234567A", "00", "S"))
    outcomes.append(client.save_sale(DEVICE, {}))
    kinds = [o.kind for o in outcomes]
    assert kinds == [K.AUTH, K.REJECTED, K.UNKNOWN, K.ACCEPTED, K.UNKNOWN, K.UNKNOWN]
    assert "[secure]" in outcomes[0].message and "[secure]" in outcomes[2].message
    texts = [repr(client), repr(DEVICE), str(DEVICE), repr(token_provider)]
    texts += [str(o) for o in outcomes] + [repr(o) for o in outcomes]
    texts += [o.message for o in outcomes]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(vars(record)) for record in caplog.records]
    assert caplog.records, "expected log records"
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    token_provider.close()


def test_an_encoded_body_goes_out_byte_for_byte_with_the_device_headers(make_client: Any) -> None:
    # The drain sends the text it froze before the first send, not a re-serialisation
    frozen = b'{"tin":"P051234567A","bhfId":"00","invcNo":7,"totAmt":116}'
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    client = make_client(handler)
    outcome = client.call(
        "saveTrnsSalesOsdc", {"ignored": True}, device=DEVICE, write=True, encoded=frozen
    )
    assert outcome.kind is K.ACCEPTED
    (request,) = seen
    assert request.content == frozen
    assert (request.headers["tin"], request.headers["bhfId"]) == ("P051234567A", "00")
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(ValueError, match="device credentials"):
        client.call("saveTrnsSalesOsdc", {}, device=None, write=True, encoded=frozen)
