"""Stock-outs merged into one ``insertStockIO``: which go together, and the payload they make.

When the oldest deferred stock-out goes (:mod:`worker.defer`), the ready stock-outs of the
branch behind it with the same movement header (``sarTyCd``, ``regTyCd``, customer, remark:
everything but the date and the lines) go inside its send, in seq order, up to the first
with another header, while the merged lines stay within ``max_merged_lines``. Lines of one
item (same code, name, class, units, price, tax type) are summed: ``qty``, ``pkg`` and
``totDcAmt`` add up, the amounts are left out and computed again for the merged line
exactly as for any stock movement. The date is the latest of the group's (the movement is
complete then).

The oldest is the carrier: its frozen body is the merged one and it takes the one ``sarNo``;
the others name it (``merged_into``) and end as its send does. Members exist only while the
carrier holds that frozen body: a resend is byte for byte; a replay or a park that drops the
body lets them go back to ``pending`` behind it, and its next start merges again.

Pure: no database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from schemas.completion import dumps_body, loads_payload
from worker.outbox.rows import StockOut

#: Line fields added up when two lines of one item are merged.
_SUMMED = ("qty", "pkg", "totDcAmt")
#: Line amounts computed again for a merged line (``schemas.vat``), and the header's.
_LINE_AMOUNTS = ("splyAmt", "taxblAmt", "taxAmt", "totAmt")
_HEADER_AMOUNTS = ("totItemCnt", "totTaxblAmt", "totTaxAmt", "totAmt")
#: Header fields that may differ within a group.
_HEADER_FREE = ("ocrnDt", "itemList", *_HEADER_AMOUNTS)


def group(carrier: str, candidates: Sequence[StockOut], max_lines: int) -> tuple[StockOut, ...]:
    """The candidates (in seq order) that go inside ``carrier``'s send: the run of those
    with its header, up to the first with another header (a stock-out never overtakes an
    earlier one: it would reach KRA first) or the first that would take the merged lines past
    ``max_lines``."""
    first = loads_payload(carrier)
    header = _header(first)
    payloads, chosen = [first], []
    for candidate in candidates:
        payload = loads_payload(candidate.payload)
        if _header(payload) != header:
            break
        if len(_merged_lines([*payloads, payload])) > max_lines:
            break
        payloads.append(payload)
        chosen.append(candidate)
    return tuple(chosen)


def merged_payload(carrier: str, members: Sequence[StockOut]) -> str:
    """The payload of the carrier's merged send (JSON, as payloads are stored)."""
    payloads = [loads_payload(carrier), *(loads_payload(m.payload) for m in members)]
    merged = {k: v for k, v in payloads[0].items() if k not in _HEADER_FREE}
    dates = [str(p["ocrnDt"]) for p in payloads if p.get("ocrnDt") is not None]
    if dates:
        merged["ocrnDt"] = max(dates)
    merged["itemList"] = _merged_lines(payloads)
    return dumps_body(merged)


def _header(payload: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in payload.items() if k not in _HEADER_FREE}, default=str, sort_keys=True
    )


def _merged_lines(payloads: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    lines: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        for line in payload.get("itemList") or ():
            key = _line_key(line)
            if key not in lines:
                lines[key] = {k: v for k, v in line.items() if k not in _LINE_AMOUNTS}
                continue
            merged = lines[key]
            for name in _SUMMED:
                if line.get(name) is not None or merged.get(name) is not None:
                    merged[name] = _dec(merged.get(name)) + _dec(line.get(name))
    return [{**line, "itemSeq": seq} for seq, line in enumerate(lines.values(), start=1)]


def _line_key(line: Mapping[str, Any]) -> str:
    same = {k: v for k, v in line.items() if k not in (*_SUMMED, *_LINE_AMOUNTS, "itemSeq")}
    return json.dumps(same, default=str, sort_keys=True)


def _dec(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))
