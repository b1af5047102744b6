"""Which URL each endpoint goes to on each flavour of host (``oscu.flavour``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from schemas.settings import OscuSettings, Settings
from tests.unit.oscu.test_oscu_client import BASE, DEVICE, METHODS, envelope
from worker.oscu import ENDPOINTS, OscuClient
from worker.oscu.endpoints import FLAVOURS, endpoint_path

#: The GavaConnect paths of the issue, written out again so a slip in the table shows here.
GAVACONNECT = {
    "selectInitOsdcInfo": "initialize",
    "selectItemClsList": "selectItemClass",
    "selectItemList": "itemInfo",
    "selectBhfList": "branchList",
    "selectCustomer": "customerPinInfo",
    "saveTrnsSalesOsdc": "sendSalesTransaction",
    "selectInvoiceDetails": "selectInvoiceDetail",
    "insertStockIO": "insert/stockIO",
    "saveStockMaster": "save/stockMaster",
    "selectStockMoveList": "selectStockMoveLists",
    "insertTrnsPurchase": "sendPurchaseTransactionInfo",
    "selectTrnsPurchaseSalesList": "getPurchaseTransactionInfo",
}


def posted_path(flavour: str, method: str, args: tuple[Any, ...]) -> str:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope("000"))

    settings = OscuSettings(flavour=flavour)  # type: ignore[arg-type]
    with OscuClient.from_settings(BASE, settings, transport=httpx.MockTransport(handler)) as c:
        assert getattr(c, method)(*args).ok
    (request,) = seen
    return request.url.path


@pytest.mark.parametrize(("method", "args", "endpoint", "write"), METHODS, ids=lambda v: str(v))
def test_gavaconnect_paths(method: str, args: tuple[Any, ...], endpoint: str, write: bool) -> None:
    # Given a client configured for GavaConnect; When it calls an endpoint
    path = posted_path("gavaconnect", method, args)
    # Then the request goes to GavaConnect's name for it (the spec name where it kept it)
    assert path == f"/etims-api/{GAVACONNECT.get(endpoint, endpoint)}"


@pytest.mark.parametrize(("method", "args", "endpoint", "write"), METHODS, ids=lambda v: str(v))
def test_etims_api_paths_are_the_spec_names(
    method: str, args: tuple[Any, ...], endpoint: str, write: bool
) -> None:
    assert posted_path("etims-api", method, args) == f"/etims-api/{endpoint}"


def test_every_flavour_maps_every_endpoint_and_no_two_to_one_path() -> None:
    for flavour, paths in FLAVOURS.items():
        assert set(paths) == set(ENDPOINTS), flavour
        assert len(set(paths.values())) == len(paths), flavour


def test_outcomes_keep_the_spec_name_whatever_the_path() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=envelope("000"))

    client = OscuClient(BASE, transport=httpx.MockTransport(handler), flavour="gavaconnect")
    with client:
        assert client.save_sale(DEVICE, {}).endpoint == "saveTrnsSalesOsdc"
    assert "gavaconnect" in repr(client)


def test_unknown_flavour_is_refused_in_settings_and_client() -> None:
    with pytest.raises(ValidationError):
        OscuSettings(flavour="vscu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flavour"):
        OscuClient(BASE, flavour="vscu")
    with pytest.raises(ValueError, match="flavour"):
        endpoint_path("saveTrnsSalesOsdc", "vscu")


def test_flavour_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETIMS_OSCU__FLAVOUR", "gavaconnect")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.oscu.flavour == "gavaconnect"
    monkeypatch.delenv("ETIMS_OSCU__FLAVOUR")
    assert Settings(_env_file=None).oscu.flavour == "etims-api"  # type: ignore[call-arg]
