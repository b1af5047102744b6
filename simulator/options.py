"""How strict the simulator is: the knobs the sources disagree on (docs/oscu.md).

One frozen value, built by the CLI or the test helpers and passed down; it is also written
into the ledger at every start, so ``verify`` judges each record by the rules that were in
force when it was accepted (e.g. ``tolerate_gaps``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

#: Spec §4.1 rates in percent (class 04 ``userDfnCd1``); B is standard VAT, E reduced.
DEFAULT_TAX_RATES: Mapping[str, Decimal] = {
    "A": Decimal("0"),
    "B": Decimal("16"),
    "C": Decimal("0"),
    "D": Decimal("0"),
    "E": Decimal("8"),
}
#: The three amount schemes (docs/oscu.md, "VAT schemes"); ``split`` is (b), the one with live
#: server-side evidence and the reference's recommendation.
VAT_SCHEMES = ("inclusive", "split", "exclusive")
DEFAULT_VAT_SCHEME = "split"
#: Where a sale's trdInvcNo must be unique for the 994 answer (no source says; an assumption
#: that follows the relay's ``ETIMS_TRD_INVC_NO_SCOPE``, whose default is ``branch``).
TRD_INVC_NO_SCOPES = ("branch", "tin", "off")
#: Host flavours: they differ in the body rules below (docs/oscu.md, "Body rules that differ
#: by host").
FLAVOURS = ("etims-api", "gavaconnect")
PKG_RULES = ("qty", "one_for_unpackaged")
#: Body rules per flavour; ``stock_before_sale`` is off unless asked for (live GavaConnect
#: enforces it, but most tests sell without a stock-in first).
_FLAVOUR_RULES: dict[str, dict[str, Any]] = {
    "etims-api": {
        "item_code_structure": False,
        "pkg_rule": "qty",
        "no_service_stock": True,
        "credit_note_buyer": True,
    },
    "gavaconnect": {
        "item_code_structure": True,
        "pkg_rule": "one_for_unpackaged",
        "no_service_stock": True,
        "credit_note_buyer": True,
    },
}


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Every behaviour switch of one simulator run."""

    #: Amount scheme checked on sales and stock IO (inclusive|split|exclusive).
    vat_scheme: str = DEFAULT_VAT_SCHEME
    #: Tax rate per tax type, percent; also served as class 04 by selectCodeList.
    tax_rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_TAX_RATES))
    #: invcNo/sarNo may skip numbers (still strictly increasing), like the etims-api sandbox.
    tolerate_gaps: bool = False
    #: Device serials KRA approved; ``None`` approves every serial.
    approved_serials: frozenset[str] | None = None
    #: Delay added to every OSCU answer (after processing), plus up to ``jitter_ms`` more.
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    #: Serve selectInvoiceDetails; off answers it with HTTP 404 like a host without it.
    invoice_details: bool = True
    #: Seed for the fault and jitter RNG, for reproducible chaos runs.
    seed: int | None = None
    #: 994 for a sale or credit note whose trdInvcNo an accepted one of the same branch
    #: (``branch``) or of any branch of the tin (``tin``) already used; ``off``: never.
    trd_invc_no_scope: str = "branch"
    #: Answer init with ``cmcKey`` at the envelope's root instead of in ``data.info`` (KRA's
    #: sandbox does, per the published SDK; the spec puts it in ``data.info``).
    init_key_at_root: bool = False
    #: Which host to stand in for: ``etims-api`` (spec paths, no OAuth) or ``gavaconnect``
    #: (its own paths, a bearer token from ``/v1/token/generate``; see gateway.py). The four
    #: body rules below default to its behaviour when left ``None``.
    flavour: str = "etims-api"
    #: saveItem: itemCd structure, prefix agreement and next running number per PIN.
    item_code_structure: bool | None = None
    #: pkg of unpackaged (NT) sale lines: ``qty`` or ``one_for_unpackaged`` (1).
    pkg_rule: str | None = None
    #: Refuse service items (itemTyCd 3) in stock IO and stock master.
    no_service_stock: bool | None = None
    #: A credit note's buyer PIN must equal its original sale's.
    credit_note_buyer: bool | None = None
    #: A sale of goods needs accepted stock of the item at the branch first.
    stock_before_sale: bool = False

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {self.flavour!r}")
        for name, default in _FLAVOUR_RULES[self.flavour].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)  # frozen: resolve once, here
        if self.pkg_rule not in PKG_RULES:
            raise ValueError(f"pkg_rule must be one of {PKG_RULES}, not {self.pkg_rule!r}")
        if self.vat_scheme not in VAT_SCHEMES:
            raise ValueError(f"vat_scheme must be one of {VAT_SCHEMES}, not {self.vat_scheme!r}")
        if self.trd_invc_no_scope not in TRD_INVC_NO_SCOPES:
            raise ValueError(
                f"trd_invc_no_scope must be one of {TRD_INVC_NO_SCOPES}, "
                f"not {self.trd_invc_no_scope!r}"
            )
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        missing = set(DEFAULT_TAX_RATES) - set(self.tax_rates)
        if missing:
            raise ValueError(f"tax_rates lacks tax types {sorted(missing)}")

    def with_changes(self, **changes: Any) -> SimulatorOptions:
        """A copy with some fields replaced (keyword names as in the dataclass). A new
        ``flavour`` brings its own rule defaults unless the rules are given too."""
        if "flavour" in changes:
            changes = {name: None for name in _FLAVOUR_RULES[self.flavour]} | changes
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The ledger's ``start`` record form (rates as strings to keep them exact)."""
        return {
            "vat_scheme": self.vat_scheme,
            "tax_rates": {k: str(v) for k, v in sorted(self.tax_rates.items())},
            "tolerate_gaps": self.tolerate_gaps,
            "approved_serials": (
                None if self.approved_serials is None else sorted(self.approved_serials)
            ),
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "invoice_details": self.invoice_details,
            "seed": self.seed,
            "trd_invc_no_scope": self.trd_invc_no_scope,
            "init_key_at_root": self.init_key_at_root,
            "flavour": self.flavour,
            "item_code_structure": self.item_code_structure,
            "pkg_rule": self.pkg_rule,
            "no_service_stock": self.no_service_stock,
            "credit_note_buyer": self.credit_note_buyer,
            "stock_before_sale": self.stock_before_sale,
        }


def parse_tax_rates(pairs: list[str]) -> dict[str, Decimal]:
    """``["B=16", "E=8"]`` -> rates merged over the defaults; a bad pair raises ValueError."""
    rates = dict(DEFAULT_TAX_RATES)
    for pair in pairs:
        code, sep, value = pair.partition("=")
        code = code.strip().upper()
        if not sep or code not in DEFAULT_TAX_RATES:
            raise ValueError(f"tax rate must look like B=16 with a type A-E, not {pair!r}")
        try:
            rate = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"tax rate {pair!r} is not a number") from exc
        if not rate.is_finite() or rate < 0 or rate > 100:
            raise ValueError(f"tax rate {pair!r} must be between 0 and 100")
        rates[code] = rate
    return rates
