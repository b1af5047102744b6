"""The QR link, the code lists' behaviour, and the package's public surface."""

from __future__ import annotations

import importlib
import inspect
from decimal import Decimal

import pytest

import schemas
from schemas import DEFAULT_TAX_RATES, StockIOType, TaxType, receipt_qr_url

#: The modules whose public names the package re-exports.
_EXPORTING_MODULES = [
    "base",
    "branch",
    "codes",
    "envelope",
    "items",
    "lookups",
    "purchases",
    "qr",
    "requests",
    "sales",
    "stock",
    "types",
    "vat",
]


def test_production_receipt_link() -> None:
    assert receipt_qr_url("P051234567A", "00", "QUII27MATATSHFRB") == (
        "https://etims.kra.go.ke/common/link/etims/receipt/indexEtimsReceiptData"
        "?Data=P051234567A00QUII27MATATSHFRB"
    )


def test_sandbox_receipt_link() -> None:
    url = receipt_qr_url("P051234567A", "01", "QUII27MATATSHFRB", sandbox=True)
    assert url == (
        "https://etims-sbx.kra.go.ke/common/link/etims/receipt/"
        "indexEtimsReceiptData?Data=P051234567A01QUII27MATATSHFRB"
    )


def test_receipt_link_data_is_url_encoded() -> None:
    url = receipt_qr_url("P051234567A", "00", "AB+/=CD")
    assert url.endswith("?Data=P051234567A00AB%2B%2F%3DCD")


@pytest.mark.parametrize(
    "tin, bhf_id, sign",
    [("P05123456A", "00", "X"), ("P051234567A", "0", "X"), ("P051234567A", "00", "")],
)
def test_receipt_link_refuses_bad_inputs(tin: str, bhf_id: str, sign: str) -> None:
    with pytest.raises(ValueError):
        receipt_qr_url(tin, bhf_id, sign)


def test_stock_directions() -> None:
    ins = {t for t in StockIOType if t.is_in}
    assert {t.value for t in ins} == {"01", "02", "03", "04", "05", "06"}
    assert {t.direction for t in StockIOType if t not in ins} == {"out"}
    assert StockIOType("11") is StockIOType.SALE and StockIOType.SALE.direction == "out"


def test_default_rates_cover_every_tax_type() -> None:
    assert set(DEFAULT_TAX_RATES) == set(TaxType)
    assert DEFAULT_TAX_RATES["B"] == Decimal(16) and DEFAULT_TAX_RATES["E"] == Decimal(8)


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(schemas).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(schemas.__all__)
    assert len(schemas.__all__) == len(set(schemas.__all__))


@pytest.mark.parametrize("module_name", _EXPORTING_MODULES)
def test_every_module_export_is_re_exported(module_name: str) -> None:
    module = importlib.import_module(f"schemas.{module_name}")
    for name in module.__all__:
        assert name in schemas.__all__, f"schemas.{module_name}.{name} is not re-exported"
        assert getattr(schemas, name) is getattr(module, name)
