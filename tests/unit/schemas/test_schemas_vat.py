"""VAT schemes: worked examples (docs/oscu.md, "VAT schemes") and properties over random baskets."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AmountIssue,
    VatScheme,
    check_sale_amounts,
    check_stock_io_amounts,
    complete_sale_amounts,
    compute_line_amounts,
    compute_sale_amounts,
    compute_stock_io_amounts,
    fill_sale_amounts,
    fill_stock_io_amounts,
    round_half_up,
)

RATES = {"A": Decimal(0), "B": Decimal(16), "C": Decimal(0), "D": Decimal(0), "E": Decimal(8)}
CENT = Decimal("0.01")
TYPES = "ABCDE"


def oracle_round(value: Decimal) -> Decimal:
    """Independent reference: Decimal's own half-up, at a precision no input can exhaust."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def one_line(qty: Any, prc: Any, tax: str = "B", **extra: Any) -> dict[str, Any]:
    return {"qty": qty, "prc": prc, "taxTyCd": tax, **extra}


# --- worked examples -----------------------------------------------------------------------

EXAMPLE = {
    # scheme: (prc, splyAmt, taxblAmt, taxAmt, totAmt, header totTaxblAmt, header totAmt)
    VatScheme.INCLUSIVE: ("1160", "1160", "1160", "160", "1160", "1160", "1160"),
    VatScheme.SPLIT: ("1160", "1160", "1000", "160", "1160", "1000", "1160"),
    VatScheme.EXCLUSIVE: ("1000", "1000", "1000", "160", "1160", "1000", "1160"),
}


@pytest.mark.parametrize("scheme", list(VatScheme))
def test_reference_example_one_line_at_16_percent(scheme: VatScheme) -> None:
    prc, sply, taxbl, tax, tot, head_taxbl, head_tot = map(Decimal, EXAMPLE[scheme])
    lines, header = compute_sale_amounts([one_line(1, prc)], scheme, RATES)
    assert lines == [{"splyAmt": sply, "dcAmt": 0, "taxblAmt": taxbl, "taxAmt": tax, "totAmt": tot}]
    assert header["totTaxblAmt"] == head_taxbl and header["totAmt"] == head_tot
    assert header["taxblAmtB"] == taxbl and header["taxAmtB"] == tax
    assert header["taxRtB"] == 16 and header["taxRtE"] == 8
    assert all(header[f"taxblAmt{t}"] == 0 and header[f"taxAmt{t}"] == 0 for t in "ACDE")
    assert header["totTaxAmt"] == tax and header["totItemCnt"] == 1


def test_gavaconnect_message_for_a_gross_taxable_amount() -> None:
    body = {"itemList": [one_line(1, 1000, splyAmt=1000, taxblAmt=1000)]}
    issues = check_sale_amounts(body, VatScheme.SPLIT, RATES)
    assert issues == [AmountIssue("itemList.0.taxblAmt", Decimal("862.07"), Decimal(1000))]
    assert str(issues[0]) == "Invalid taxblAmt on item: 1. Expected: 862.07, But Found: 1000.00"


def test_odoo_fixture_with_a_discount_is_exclusive() -> None:
    amounts = compute_line_amounts(
        Decimal(1), Decimal(1), Decimal(16), VatScheme.EXCLUSIVE, dc_rt=Decimal(10)
    )
    expected = {
        "splyAmt": "1",
        "dcAmt": "0.1",
        "taxblAmt": "0.9",
        "taxAmt": "0.14",
        "totAmt": "1.04",
    }
    assert amounts == {key: Decimal(value) for key, value in expected.items()}


def test_spec_stock_sample_at_18_percent_inclusive() -> None:
    rates = RATES | {"B": Decimal(18)}
    lines, header = compute_stock_io_amounts([one_line(10, 3500)], VatScheme.INCLUSIVE, rates)
    assert lines[0] == {
        "splyAmt": Decimal(35000),
        "totDcAmt": Decimal(0),
        "taxblAmt": Decimal(35000),
        "taxAmt": Decimal("5338.98"),
        "totAmt": Decimal(35000),
    }
    assert header == {
        "totTaxblAmt": Decimal(35000),
        "totTaxAmt": Decimal("5338.98"),
        "totAmt": Decimal(35000),
        "totItemCnt": 1,
    }


def test_stock_discount_is_an_amount() -> None:
    lines, _ = compute_stock_io_amounts([one_line(2, 580, totDcAmt="160")], VatScheme.SPLIT, RATES)
    assert lines[0] == {
        "splyAmt": Decimal(1160),
        "totDcAmt": Decimal(160),
        "taxblAmt": Decimal("862.07"),
        "taxAmt": Decimal("137.93"),
        "totAmt": Decimal(1000),
    }


def test_fill_keeps_what_the_caller_sent_and_check_reports_it() -> None:
    body: dict[str, Any] = {
        "itemList": [one_line(1, 1160, totAmt=1200)],
        "totAmt": None,
        "remark": "x",
    }
    filled = fill_sale_amounts(body, "split", RATES)
    assert filled["itemList"][0]["totAmt"] == 1200
    assert filled["itemList"][0]["taxblAmt"] == Decimal(1000)
    assert filled["itemList"][0]["dcRt"] == 0
    assert filled["totAmt"] == Decimal(1160) and filled["remark"] == "x"
    assert body["itemList"][0].keys() == {"qty", "prc", "taxTyCd", "totAmt"}, "input untouched"
    assert check_sale_amounts(filled, "split", RATES) == [
        AmountIssue("itemList.0.totAmt", Decimal(1160), Decimal(1200))
    ]


def test_json_floats_are_read_exactly() -> None:
    body = {"itemList": [one_line(0.1, 0.3, splyAmt=0.03)]}
    assert check_sale_amounts(body, VatScheme.SPLIT, RATES, tolerance=Decimal(0)) == []


def test_missing_rate_or_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tax type C"):
        compute_sale_amounts([one_line(1, 1)], VatScheme.SPLIT, {"A": 0, "B": 16})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"itemList\.0\.prc"):
        compute_sale_amounts([{"qty": 1, "taxTyCd": "B"}], VatScheme.SPLIT, RATES)
    with pytest.raises(ValueError, match=r"itemList\.0\.taxTyCd"):
        compute_sale_amounts([one_line(1, 1, tax="Z")], VatScheme.SPLIT, RATES)


@pytest.mark.timeout(5)
@pytest.mark.parametrize("qty", ["1e999999", "1e-999999", 1e300])
def test_an_absurd_number_is_refused_at_once_not_computed(qty: Any) -> None:
    # Exact arithmetic on 10^999999 would hold a worker's CPU for minutes per line
    with pytest.raises(ValueError, match=r"itemList\.0\.qty: out of range"):
        compute_sale_amounts([one_line(qty, 116)], VatScheme.SPLIT, RATES)


@pytest.mark.parametrize(
    "value, rounded",
    [
        ("0.005", "0.01"),
        ("0.004999", "0.00"),
        ("2.675", "2.68"),
        ("-0.005", "-0.01"),
        ("7", "7.00"),
    ],
)
def test_round_half_up_examples(value: str, rounded: str) -> None:
    result = round_half_up(Decimal(value))
    assert result == Decimal(rounded) and result.as_tuple().exponent == -2


# --- properties ----------------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=1_000_000, places=2)
quantities = st.decimals(min_value=Decimal("0.01"), max_value=10_000, places=2)
discounts = st.one_of(st.just(Decimal(0)), st.decimals(min_value=0, max_value=100, places=2))
rate_values = st.decimals(min_value=0, max_value=40, places=2)
rate_tables = st.fixed_dictionaries({t: rate_values for t in TYPES})
schemes = st.sampled_from(list(VatScheme))
sale_lines = st.lists(
    st.fixed_dictionaries(
        {"qty": quantities, "prc": money, "dcRt": discounts, "taxTyCd": st.sampled_from(TYPES)}
    ),
    min_size=1,
    max_size=12,
)
stock_lines = st.lists(
    st.fixed_dictionaries(
        {
            "qty": quantities,
            "prc": money,
            "totDcAmt": st.decimals(min_value=0, max_value=50, places=2),
            "taxTyCd": st.sampled_from(TYPES),
        }
    ),
    min_size=1,
    max_size=12,
)


def reference_line(line: dict[str, Any], rate: Decimal, scheme: VatScheme) -> dict[str, Decimal]:
    """The scheme table of docs/oscu.md, written the obvious way with Decimal."""
    with localcontext() as context:
        context.prec = 60
        supply = oracle_round(line["qty"] * line["prc"])
        discount = oracle_round(supply * line.get("dcRt", 0) / 100)
        base = supply - discount
        if scheme is VatScheme.INCLUSIVE:
            taxable, tax, total = base, oracle_round(base * rate / (100 + rate)), base
        elif scheme is VatScheme.SPLIT:
            taxable = oracle_round(base / (1 + rate / 100))
            tax = base - taxable
            total = taxable + tax
        else:
            taxable, tax = base, oracle_round(base * rate / 100)
            total = taxable + tax
    return {
        "splyAmt": supply,
        "dcAmt": discount,
        "taxblAmt": taxable,
        "taxAmt": tax,
        "totAmt": total,
    }


@settings(max_examples=300)
@given(lines=sale_lines, scheme=schemes, rates=rate_tables)
def test_lines_match_the_scheme_table_and_add_up(
    lines: list[dict[str, Any]], scheme: VatScheme, rates: dict[str, Decimal]
) -> None:
    computed, _ = compute_sale_amounts(lines, scheme, rates)
    for line, amounts in zip(lines, computed, strict=True):
        assert amounts == reference_line(line, rates[line["taxTyCd"]], scheme)
        for value in amounts.values():
            assert value == value.quantize(CENT), "every amount is whole cents"
        if scheme is VatScheme.INCLUSIVE:
            assert amounts["totAmt"] == amounts["taxblAmt"]
        else:
            assert amounts["totAmt"] == amounts["taxblAmt"] + amounts["taxAmt"]
        if scheme is VatScheme.SPLIT:
            assert amounts["totAmt"] == amounts["splyAmt"] - amounts["dcAmt"]


@settings(max_examples=300)
@given(lines=sale_lines, scheme=schemes, rates=rate_tables)
def test_header_is_the_sum_of_rounded_lines(
    lines: list[dict[str, Any]], scheme: VatScheme, rates: dict[str, Decimal]
) -> None:
    computed, header = compute_sale_amounts(lines, scheme, rates)
    for tax_type in TYPES:
        of_type = [
            a for line, a in zip(lines, computed, strict=True) if line["taxTyCd"] == tax_type
        ]
        assert header[f"taxblAmt{tax_type}"] == sum(a["taxblAmt"] for a in of_type)
        assert header[f"taxAmt{tax_type}"] == sum(a["taxAmt"] for a in of_type)
        assert header[f"taxRt{tax_type}"] == rates[tax_type]
    assert header["totTaxblAmt"] == sum(Decimal(header[f"taxblAmt{t}"]) for t in TYPES)
    assert header["totTaxAmt"] == sum(Decimal(header[f"taxAmt{t}"]) for t in TYPES)
    assert header["totAmt"] == sum(a["totAmt"] for a in computed)
    assert header["totItemCnt"] == len(lines)


@given(st.decimals(min_value=-10_000, max_value=10_000, places=6))
def test_rounding_is_half_up_to_the_cent(value: Decimal) -> None:
    assert round_half_up(value) == oracle_round(value)


def amount_paths(
    body: dict[str, Any], line_fields: tuple[str, ...], header_fields: list[str]
) -> list[str]:
    paths = [f"itemList.{i}.{f}" for i in range(len(body["itemList"])) for f in line_fields]
    return paths + header_fields


def get_path(body: dict[str, Any], path: str) -> Any:
    node: Any = body
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value


SALE_HEADER = [f"{kind}{t}" for kind in ("taxblAmt", "taxAmt", "taxRt") for t in TYPES] + [
    "totTaxblAmt",
    "totTaxAmt",
    "totAmt",
]
SALE_LINE = ("splyAmt", "dcAmt", "taxblAmt", "taxAmt", "totAmt")
STOCK_LINE = ("splyAmt", "taxblAmt", "taxAmt", "totAmt")
STOCK_HEADER = ["totTaxblAmt", "totTaxAmt", "totAmt"]
deltas = st.decimals(min_value=Decimal("0.02"), max_value=1000, places=2).flatmap(
    lambda d: st.sampled_from([d, -d])
)


@settings(max_examples=300)
@given(lines=sale_lines, scheme=schemes, rates=rate_tables, data=st.data(), delta=deltas)
def test_sale_fill_then_check_is_clean_and_one_perturbation_is_found_exactly(
    lines: list[dict[str, Any]],
    scheme: VatScheme,
    rates: dict[str, Decimal],
    data: st.DataObject,
    delta: Decimal,
) -> None:
    filled = fill_sale_amounts({"itemList": lines}, scheme, rates)
    assert check_sale_amounts(filled, scheme, rates) == []
    path = data.draw(st.sampled_from(amount_paths(filled, SALE_LINE, SALE_HEADER)))
    original = Decimal(get_path(filled, path))
    set_path(filled, path, original + delta)
    assert check_sale_amounts(filled, scheme, rates) == [
        AmountIssue(path, original, original + delta)
    ]


@settings(max_examples=200)
@given(lines=stock_lines, scheme=schemes, rates=rate_tables, data=st.data(), delta=deltas)
def test_stock_fill_then_check_is_clean_and_one_perturbation_is_found_exactly(
    lines: list[dict[str, Any]],
    scheme: VatScheme,
    rates: dict[str, Decimal],
    data: st.DataObject,
    delta: Decimal,
) -> None:
    filled = fill_stock_io_amounts({"itemList": lines}, scheme, rates)
    assert check_stock_io_amounts(filled, scheme, rates) == []
    computed, header = compute_stock_io_amounts(lines, scheme, rates)
    assert header["totAmt"] == sum(a["totAmt"] for a in computed)
    assert filled["totItemCnt"] == len(lines)
    path = data.draw(st.sampled_from(amount_paths(filled, STOCK_LINE, STOCK_HEADER)))
    original = Decimal(get_path(filled, path))
    set_path(filled, path, original + delta)
    assert check_stock_io_amounts(filled, scheme, rates) == [
        AmountIssue(path, original, original + delta)
    ]


@given(lines=sale_lines, scheme=schemes)
def test_a_one_cent_difference_is_within_tolerance(
    lines: list[dict[str, Any]], scheme: VatScheme
) -> None:
    filled = fill_sale_amounts({"itemList": lines}, scheme, RATES)
    filled["totAmt"] += Decimal("0.01")
    assert check_sale_amounts(filled, scheme, RATES) == []
    assert [i.path for i in check_sale_amounts(filled, scheme, RATES, Decimal(0))] == ["totAmt"]


@settings(max_examples=200)
@given(lines=sale_lines, scheme=schemes, rates=rate_tables, data=st.data(), delta=deltas)
def test_complete_fills_and_checks_in_one_pass_as_fill_then_check_would(
    lines: list[dict[str, Any]],
    scheme: VatScheme,
    rates: dict[str, Decimal],
    data: st.DataObject,
    delta: Decimal,
) -> None:
    # A producer sends some amounts (one of them off) and leaves the rest out
    full = fill_sale_amounts({"itemList": lines}, scheme, rates)
    path = data.draw(st.sampled_from(amount_paths(full, SALE_LINE, SALE_HEADER)))
    sent = {"itemList": [dict(line) for line in lines]}
    set_path(sent, path, Decimal(get_path(full, path)) + delta)
    before = repr(sent)

    filled, issues = complete_sale_amounts(sent, scheme, rates)

    assert filled == fill_sale_amounts(sent, scheme, rates)
    assert issues == check_sale_amounts(filled, scheme, rates) != []
    assert repr(sent) == before  # the producer's payload is not changed
