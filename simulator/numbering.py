"""KRA-side numbering: the per-branch ``invcNo``/``sarNo`` check and the receipt signature.

KRA advances a branch's counter only on an accepted write (docs/oscu.md, "Numbers,
duplicates and what KRA is asked"), so the check compares the sent number with the highest
accepted one: equal-or-below is a repeat, more than one above is a gap (refused unless the run
tolerates gaps, as the etims-api sandbox appears to).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Container
from dataclasses import dataclass
from enum import Enum


class SequenceVerdict(Enum):
    NEXT = "next"
    #: at or below the last accepted number (or an accepted one in tolerant mode)
    REPEAT = "repeat"
    #: skips numbers (strict mode) or goes back to a never-used number (tolerant mode)
    OUT_OF_ORDER = "out_of_order"


def check_sequence(
    sent: int, last: int, *, tolerate_gaps: bool, used: Container[int] | None = None
) -> SequenceVerdict:
    """Judge ``sent`` against the branch's ``last`` accepted number.

    ``used`` (the accepted numbers) only matters in tolerant mode, where a number below
    ``last`` may have been skipped rather than used.
    """
    if sent == last + 1:
        return SequenceVerdict.NEXT
    if sent <= last:
        if tolerate_gaps and used is not None and sent not in used:
            return SequenceVerdict.OUT_OF_ORDER
        return SequenceVerdict.REPEAT
    return SequenceVerdict.NEXT if tolerate_gaps else SequenceVerdict.OUT_OF_ORDER


def sequence_message(field: str, sent: int, last: int, *, tolerate_gaps: bool) -> str:
    """The live-G wording, naming the field and the value the server expected."""
    if tolerate_gaps:
        return f"Invalid {field} sequence, expected: greater than {last} but found: {sent}"
    return f"Invalid {field} sequence, expected: {last + 1} but found: {sent}"


@dataclass(frozen=True, slots=True)
class Signature:
    intrl_data: str
    rcpt_sign: str


def sign_receipt(secret: str, tin: str, bhf_id: str, invc_no: int, tot_rcpt_no: int) -> Signature:
    """Derive ``intrlData`` (26) and ``rcptSign`` (16) chars of ``[A-Z2-7]`` from the device key.

    Deterministic so that a replayed ledger and a live answer agree, and keyed so that
    numbers from different devices never collide. Base32 keeps to KRA's ``[A-Z0-9]`` shape.
    """
    message = f"{tin}|{bhf_id}|{invc_no}|{tot_rcpt_no}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    text = base64.b32encode(digest).decode().rstrip("=")
    return Signature(intrl_data=text[:26], rcpt_sign=text[26:42])
