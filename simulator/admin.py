"""The control plane under ``/__admin/``: faults and counters, for tests in other processes.

=========  ==========================  =======================================================
method     path                        JSON in -> JSON out
=========  ==========================  =======================================================
POST       /__admin/faults             a fault object or a list of them (see faults.py)
                                       -> ``{"ids": [1, 2]}``; 400 ``{"error": ...}``
GET        /__admin/faults             -> ``{"faults": [fault + id + fired, ...]}``
DELETE     /__admin/faults             -> ``{"cleared": n}``
DELETE     /__admin/faults/<id>        -> ``{"removed": true|false}``
POST       /__admin/seed               ``{"seed": 42}`` -> ``{"seed": 42}`` (fault RNG)
GET        /__admin/stats              -> counters: requests and result codes per endpoint,
                                       fault events, ledger, per-branch counts
GET        /__admin/health             -> ``{"ok": true}``
POST       /__admin/notices            a notice or a list (``noticeNo``, ``regDt`` yyyyMMddHHmmss,
                                       title, cont...) that selectNoticeList serves from now on
                                       -> ``{"notices": n}``
=========  ==========================  =======================================================
"""

from __future__ import annotations

from typing import Any

import orjson

from simulator.core import Simulator
from simulator.faults import Fault


class AdminApi:
    """Pure request -> (status, JSON) handling; the server does the HTTP."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        route = path.removeprefix("/__admin/").rstrip("/")
        try:
            if route == "health" and method == "GET":
                return 200, {"ok": True}
            if route == "stats" and method == "GET":
                return 200, self.simulator.stats()
            if route == "faults":
                return self._faults(method, body)
            if route == "notices" and method == "POST":
                return 200, {"notices": self._publish_notices(body)}
            if route.startswith("faults/") and method == "DELETE":
                fault_id = int(route.removeprefix("faults/"))
                return 200, {"removed": self.simulator.faults.remove(fault_id)}
            if route == "seed" and method == "POST":
                seed = orjson.loads(body or b"{}").get("seed")
                if seed is not None and not isinstance(seed, int):
                    raise ValueError("seed must be an integer or null")
                self.simulator.faults.seed(seed)
                return 200, {"seed": seed}
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
            return 400, {"error": str(exc)}
        return 404, {"error": f"no admin route {method} {path}"}

    def _publish_notices(self, body: bytes) -> int:
        raw = orjson.loads(body)
        notices = raw if isinstance(raw, list) else [raw]
        for notice in notices:
            if not isinstance(notice, dict) or "noticeNo" not in notice or "regDt" not in notice:
                raise ValueError("a notice needs noticeNo and regDt")
        lookups = self.simulator.rules.lookups
        lookups.extra_notices.extend(notices)
        return len(lookups.extra_notices)

    def _faults(self, method: str, body: bytes) -> tuple[int, Any]:
        registry = self.simulator.faults
        if method == "GET":
            return 200, {"faults": registry.list()}
        if method == "DELETE":
            return 200, {"cleared": registry.clear()}
        if method != "POST":
            return 405, {"error": "use GET, POST or DELETE"}
        raw = orjson.loads(body)
        rules = [Fault.from_json(item) for item in (raw if isinstance(raw, list) else [raw])]
        return 200, {"ids": [registry.add(rule) for rule in rules]}
