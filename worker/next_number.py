"""Whether an operator's ``branch set-next`` is safe: the checks, in one place.

Setting a branch's next invcNo/sarNo is how an operator unparks a branch whose counter
disagrees with KRA's. A wrong value is quiet damage: a number at or below one a job of ours
holds is handed out twice (a second sale under a number KRA has signed), and a number far
ahead leaves a gap KRA refuses on strict hosts. So a move is allowed without ``--force`` only
when it is the number right after the highest one held, or a number KRA itself named (a
sequence answer's "expected N", or a receipt lookup that shows N-1 taken and N free). A
number that a waiting job may already have sent is refused even with ``--force``
(``replay._numbers_give_way``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from worker.oscu.credentials import DeviceCredentials
from worker.oscu.outcome import CallOutcome, OutcomeKind


@dataclass(frozen=True, slots=True)
class CounterView:
    """What is known about one counter (``invcNo`` or ``sarNo``) of a branch."""

    name: str
    #: The branch's next number as the outbox has it now.
    current_next: int
    #: Highest number of an accepted job, from the outbox.
    last_accepted: int | None
    #: Highest number any job holds (accepted, in flight, unknown, dead with the number kept).
    highest_held: int | None
    #: The next number KRA named itself, if it did (sequence answer or receipt lookup).
    kra_expects: int | None = None

    @property
    def natural_next(self) -> int:
        """The number right after everything our jobs hold."""
        return (self.highest_held or 0) + 1

    def describe(self) -> str:
        parts = [f"next {self.name} {self.current_next}"]
        parts.append(
            f"last accepted {self.last_accepted}" if self.last_accepted else "none accepted yet"
        )
        if self.highest_held and self.highest_held != self.last_accepted:
            parts.append(f"highest held {self.highest_held} (not accepted yet)")
        if self.kra_expects is not None:
            parts.append(f"KRA expects {self.kra_expects}")
        return ", ".join(parts)


def refusal(view: CounterView, proposed: int) -> str | None:
    """Why setting ``view``'s counter to ``proposed`` needs ``--force``; None when it is safe.

    A number KRA named itself is its own word on what it holds: it goes through. (A waiting
    job that may have sent a number is guarded apart, and never overridden.)"""
    if view.kra_expects is not None and proposed == view.kra_expects:
        return None
    if view.highest_held is not None and proposed <= view.highest_held:
        return (
            f"{view.name} {proposed} goes backwards: our jobs already hold numbers up to "
            f"{view.highest_held} (last accepted {view.last_accepted}), so {proposed} would "
            f"be given to a second document; the next free number is {view.natural_next}"
        )
    if proposed == view.natural_next:
        return None
    expected = f"KRA expects {view.kra_expects}" if view.kra_expects else "KRA named no number"
    return (
        f"{view.name} {proposed} jumps ahead of the next free number {view.natural_next} "
        f"({expected}): a gap is refused by strict hosts"
    )


class InvoiceLookup(Protocol):
    """The one OSCU lookup the check needs (``OscuClient`` has it)."""

    def select_invoice_details(self, device: DeviceCredentials, invc_no: int) -> CallOutcome: ...


def kra_confirms_next_invoice(
    client: InvoiceLookup, device: DeviceCredentials, proposed: int
) -> bool | None:
    """Ask KRA whether ``proposed`` is its next invcNo: N-1 is taken and N is free.

    True or False when KRA answered both lookups; None when it could not tell (host without
    ``selectInvoiceDetails``, KRA down): the operator then decides, with ``--force``.
    """
    here = client.select_invoice_details(device, proposed)
    if here.kind is OutcomeKind.ACCEPTED and here.data:
        return False  # KRA already holds it
    if here.kind is not OutcomeKind.EMPTY:
        return None
    if proposed == 1:
        return True
    before = client.select_invoice_details(device, proposed - 1)
    if before.kind is OutcomeKind.ACCEPTED and before.data:
        return True
    return False if before.kind is OutcomeKind.EMPTY else None
