"""KRA answers that say more about the branch than about the job: the one table of them.

A systemic rejection refuses every following job of the branch the same way (the device is
not valid, the cmcKey is wrong, KRA's tax rates differ from ours). Dead-lettering it would
dead-letter every sale of the day one by one, each with its number handed on; instead the
drain parks the branch with KRA's words and the command that fixes the cause, and the job
keeps its number (worker/decide.py).

Also here: reading a numbering ("sequence") answer that names the number KRA expects next,
so the park can say which ``branch set-next`` to run. Only ``invcNo``/``sarNo`` sequence
answers count; "rsdQty mismatch. Expected: N but found: M" is a stock answer, not numbering.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.jobs import Counter
from worker.oscu.outcome import CallOutcome, OutcomeKind

#: Placeholder the drain replaces with the branch (``TIN/BHF``) in a fix command.
BRANCH = "{branch}"


@dataclass(frozen=True, slots=True)
class SystemicRule:
    """One kind of systemic rejection: matched by KRA code, outcome kind or message."""

    name: str
    fix: str
    codes: frozenset[str] = frozenset()
    kinds: frozenset[OutcomeKind] = frozenset()
    message: re.Pattern[str] | None = None

    def matches(self, outcome: CallOutcome) -> bool:
        if outcome.result_code is not None and outcome.result_code in self.codes:
            return True
        if outcome.kind in self.kinds:
            return True
        return self.message is not None and bool(self.message.search(outcome.message or ""))


_UNPARK = f"then etims-relay branch unpark {BRANCH} --reason TEXT"

#: THE table. First match wins; order from most to least specific.
SYSTEMIC_RULES: tuple[SystemicRule, ...] = (
    SystemicRule(
        "device deactivated",
        fix=f"ask KRA to reactivate the branch's OSCU device (or register a new one), {_UNPARK}",
        message=re.compile(
            r"\bdevice\b[^.]*\b(de-?activated|inactive|disabled|blocked|suspended)\b"
            r"|\b(de-?activated|inactive|disabled|blocked|suspended)\b[^.]*\bdevice\b",
            re.IGNORECASE,
        ),
    ),
    SystemicRule(
        "tax rate mismatch",
        fix=(
            "set ETIMS_TAX_RATES to the rates KRA holds for this PIN (selectCodeList class 04) "
            f"and restart the workers, {_UNPARK}"
        ),
        message=re.compile(r"tax\s*rate\s*mismatch|rule\s+taxRt[A-E]\b", re.IGNORECASE),
    ),
    SystemicRule(
        "device or credentials refused",
        fix=(
            "check the branch's device and cmcKey (etims-relay device init for a new device, "
            f"or the OAuth credentials), {_UNPARK}"
        ),
        codes=frozenset({"900", "901", "902", "903", "905"}),
        kinds=frozenset({OutcomeKind.AUTH}),
    ),
)


def systemic_rule(
    outcome: CallOutcome, rules: Iterable[SystemicRule] = SYSTEMIC_RULES
) -> SystemicRule | None:
    """The rule a refusal matches, or None when it concerns this job only."""
    if outcome.kind not in (OutcomeKind.REJECTED, OutcomeKind.AUTH):
        return None
    return next((rule for rule in rules if rule.matches(outcome)), None)


# --------------------------------------------------------------------------- numbering


@dataclass(frozen=True, slots=True)
class Expectation:
    """KRA's next number for a counter, as a sequence answer stated it."""

    counter: Counter
    expected: int
    found: int | None


#: GavaConnect: "Invalid invcNo sequence, expected: 43 but found: 41"; a tolerant host:
#: "... expected: greater than 42 but found: 41"; sarNo alike.
_SEQUENCE = re.compile(
    r"\b(?P<counter>invcNo|sarNo)\b[^:]*?\bsequence\b\W*expected\s*:?\s*"
    r"(?P<greater>greater\s+than\s+)?(?P<expected>\d+)"
    r"(?:\W+but\s+found\s*:?\s*(?P<found>\d+))?",
    re.IGNORECASE,
)


def expectation(message: str | None, counter: Counter | None) -> Expectation | None:
    """The number KRA expects for ``counter``, if ``message`` is a sequence answer naming it."""
    if not message or counter is None:
        return None
    match = _SEQUENCE.search(message)
    if match is None or match["counter"].lower() != counter.lower():
        return None
    expected = int(match["expected"]) + (1 if match["greater"] else 0)
    found = int(match["found"]) if match["found"] is not None else None
    return Expectation(counter, expected, found)
