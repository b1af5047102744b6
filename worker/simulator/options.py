"""How strict the simulator is: the knobs the sources disagree on (oscu-reference §10).

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
#: The three amount schemes of oscu-reference §7.1; ``split`` is (b), the one with live
#: server-side evidence and the reference's recommendation.
VAT_SCHEMES = ("inclusive", "split", "exclusive")
DEFAULT_VAT_SCHEME = "split"


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
    #: Which host to stand in for: ``etims-api`` (spec paths, no OAuth) or ``gavaconnect``
    #: (its own paths, a bearer token from ``/v1/token/generate``); see gateway.py.
    flavour: str = "etims-api"

    def __post_init__(self) -> None:
        if self.vat_scheme not in VAT_SCHEMES:
            raise ValueError(f"vat_scheme must be one of {VAT_SCHEMES}, not {self.vat_scheme!r}")
        if self.flavour not in ("etims-api", "gavaconnect"):
            raise ValueError(f"flavour must be etims-api or gavaconnect, not {self.flavour!r}")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        missing = set(DEFAULT_TAX_RATES) - set(self.tax_rates)
        if missing:
            raise ValueError(f"tax_rates lacks tax types {sorted(missing)}")

    def with_changes(self, **changes: Any) -> SimulatorOptions:
        """A copy with some fields replaced (keyword names as in the dataclass)."""
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
            "flavour": self.flavour,
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
