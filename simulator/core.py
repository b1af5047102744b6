"""The simulator without HTTP: state + rules + ledger + faults + counters, in one object.

:class:`Simulator` is what the server calls for every OSCU request and what the test helpers
expose. It is driven from a single event-loop thread, so request handling needs no locks;
the fault registry is the only part other threads change.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson

from simulator.answers import Answer, fail
from simulator.faults import FaultRegistry
from simulator.ledger import Ledger, read_records
from simulator.options import SimulatorOptions
from simulator.rules import INIT, Rules
from simulator.state import SimulatorState


class Simulator:
    """One simulated KRA host bound to one ledger file."""

    def __init__(self, ledger_path: str | os.PathLike[str], options: SimulatorOptions) -> None:
        self.options = options
        self.state = SimulatorState()
        last_seq = 0
        for record in read_records(ledger_path):
            self.state.apply(record)
            last_seq = max(last_seq, int(record.get("seq", 0)))
        self.reloaded_records = self.state.records
        self.ledger = Ledger(ledger_path, next_seq=last_seq + 1)
        self.state.apply(self.ledger.append({"kind": "start", "options": options.to_json()}))
        self.rules = Rules(self.state, options)
        self.faults = FaultRegistry(
            seed=options.seed, latency_ms=options.latency_ms, jitter_ms=options.jitter_ms
        )
        self.requests: Counter[str] = Counter()
        self.results: dict[str, Counter[str]] = {}
        self.events: Counter[str] = Counter()

    @property
    def endpoints(self) -> frozenset[str]:
        return self.rules.endpoints

    def process(self, endpoint: str, headers: Mapping[str, str], raw_body: bytes) -> Answer:
        """Decide, record (accepted writes only), then fold into the state; never raises."""
        answer = self._decide(endpoint, headers, raw_body)
        if answer.record is not None:
            self.state.apply(self.ledger.append(answer.record))
            self.events["recorded"] += 1
        self.count(endpoint, answer.result_cd)
        return answer

    def count(self, endpoint: str, outcome: str) -> None:
        """Count one request by its result code (or ``http_503``/``dropped`` for faults)."""
        self.requests[endpoint] += 1
        by_code = self.results.get(endpoint)
        if by_code is None:
            by_code = self.results[endpoint] = Counter()
        by_code[outcome] += 1

    def _decide(self, endpoint: str, headers: Mapping[str, str], raw_body: bytes) -> Answer:
        try:
            if endpoint == INIT:
                parsed = self._parse(raw_body)
                return parsed if isinstance(parsed, Answer) else self.rules.init_device(parsed)
            refused = self.rules.not_served(endpoint)
            if refused is not None:
                return refused
            # Headers are checked before the body, as KRA's gateway does.
            branch = self.rules.authenticate(headers)
            if isinstance(branch, Answer):
                return branch
            parsed = self._parse(raw_body)
            if isinstance(parsed, Answer):
                return parsed
            return self.rules.dispatch(endpoint, branch, parsed)
        except Exception as exc:  # a simulator bug must not kill the server
            self.events["internal_errors"] += 1
            return fail("999", f"Unknown error in simulator: {type(exc).__name__}: {exc}")

    @staticmethod
    def _parse(raw_body: bytes) -> dict[str, Any] | Answer:
        """The JSON object of the body, or 911 ("no request full text"): KRA has no request
        to read in an empty body, in text that is not JSON, or in JSON that is not an object
        (a list, a string, a number), so none of them is a parameter error (910)."""
        if not raw_body.strip():
            return fail("911", "No request full text: the request body is empty")
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            return fail(
                "911", f"No request full text: malformed JSON ({exc.msg} at char {exc.pos})"
            )
        if not isinstance(body, dict):
            return fail("911", "No request full text: the body must be a JSON object")
        return body

    def stats(self) -> dict[str, Any]:
        """Counters for ``GET /__admin/stats`` (JSON-ready)."""
        return {
            "requests": sum(self.requests.values()),
            "by_endpoint": {
                endpoint: {"requests": count, "results": dict(self.results.get(endpoint, {}))}
                for endpoint, count in sorted(self.requests.items())
            },
            "events": dict(self.events),
            "faults_fired": dict(self.faults.fired),
            "faults_active": len(self.faults.list()),
            "ledger": {
                "path": str(self.ledger.path),
                "next_seq": self.ledger.next_seq,
                "reloaded_records": self.reloaded_records,
            },
            "state": self.state.summary(),
        }

    def close(self) -> None:
        self.ledger.close()
