"""Fault injection: the failures a client must survive, switchable per endpoint at run time.

A :class:`Fault` is a rule ("on saveTrnsSalesOsdc, 3 times, answer 990"); the
:class:`FaultRegistry` holds the active rules and turns each incoming request into a
:class:`FaultPlan`. The registry is shared between the server's event loop and the thread
(or admin HTTP client) that changes it, hence the lock. Its RNG is seedable so chaos runs
repeat.

Kinds and their fields (JSON shape of ``POST /__admin/faults``)::

    {"endpoint": "saveTrnsSalesOsdc" | "*",   # which OSCU path; "*" = all
     "kind": "latency" | "http_error" | "result_code" | "drop" | "lost_answer",
     "times": 3,            # fire at most N times (omit: unlimited)
     "probability": 0.25,   # fire with probability p per matching request (omit: always)
     "ms": 1500, "jitter_ms": 100, "when": "after" | "before",   # latency
     "status": 503,                                                # http_error
     "code": "990", "message": "..."}                              # result_code

- ``latency``: sleep ``ms`` (+ uniform 0..jitter) ``after`` processing (the write is recorded,
  then the answer is late: a client read timeout must become *unknown*) or ``before`` it.
- ``http_error``: answer HTTP ``status`` without processing.
- ``result_code``: answer an envelope with ``code`` (990 rate limit by default), unprocessed.
- ``drop``: close the connection before processing; nothing recorded.
- ``lost_answer``: process and record, then close the connection without answering.

Latency rules add up; of the other kinds the first rule that fires decides.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP_ERROR = "http_error"
    RESULT_CODE = "result_code"
    DROP = "drop"
    LOST_ANSWER = "lost_answer"


_FIELDS = frozenset(
    {"endpoint", "kind", "times", "probability", "ms", "jitter_ms", "when", "status", "code",
     "message"}
)  # fmt: skip


@dataclass(slots=True)
class Fault:
    """One injection rule; see the module docstring for the meaning of each field."""

    kind: FaultKind
    endpoint: str = "*"
    times: int | None = None
    probability: float | None = None
    ms: float = 0.0
    jitter_ms: float = 0.0
    when: str = "after"
    status: int = 503
    code: str = "990"
    message: str | None = None
    id: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.ms < 0 or self.jitter_ms < 0:
            raise ValueError("ms and jitter_ms must be >= 0")
        if self.when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        self.code = str(self.code)

    @classmethod
    def from_json(cls, raw: Any) -> Fault:
        """Build from the admin JSON shape; unknown keys and bad values raise ValueError."""
        if not isinstance(raw, dict):
            raise ValueError("a fault must be a JSON object")
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in raw:
            raise ValueError("a fault needs a kind")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = str(self.kind)
        return out

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("*", endpoint) and (self.times is None or self.times > 0)


@dataclass(slots=True)
class FaultPlan:
    """What to do with one request: delays around processing and at most one action."""

    before_s: float = 0.0
    after_s: float = 0.0
    action: FaultKind | None = None
    status: int = 503
    code: str = "990"
    message: str | None = None
    fired: list[str] = field(default_factory=list)

    @property
    def is_plain(self) -> bool:
        return self.action is None and self.before_s == 0.0 and self.after_s == 0.0


_PLAIN = FaultPlan()


class FaultRegistry:
    """The active rules plus counters; safe to change from any thread."""

    def __init__(
        self, *, seed: int | None = None, latency_ms: float = 0.0, jitter_ms: float = 0.0
    ) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._next_id = 1
        self._rng = random.Random(seed)  # chaos, not secrets
        self.base_latency_s = latency_ms / 1000.0
        self.base_jitter_s = jitter_ms / 1000.0
        self.fired: dict[str, int] = {kind.value: 0 for kind in FaultKind}

    def add(self, fault: Fault | None = None, /, **fields: Any) -> int:
        """Install a rule (a :class:`Fault` or its fields as keywords); returns its id."""
        rule = fault if fault is not None else Fault(**fields)
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
            return rule.id

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [rule for rule in self._rules if rule.id != fault_id]
            return len(self._rules) != before

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        with self._lock:
            count = len(self._rules)
            self._rules = []
            return count

    def seed(self, seed: int | None) -> None:
        with self._lock:
            self._rng.seed(seed)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def plan(self, endpoint: str) -> FaultPlan:
        """Decide the faults for one request, consuming ``times`` of the rules that fire."""
        if not self._rules and self.base_latency_s == 0.0 and self.base_jitter_s == 0.0:
            return _PLAIN
        plan = FaultPlan(after_s=self._base_delay())
        with self._lock:
            for rule in self._rules:
                if not rule.matches(endpoint):
                    continue
                if rule.kind is not FaultKind.LATENCY and plan.action is not None:
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                self._fire(rule, plan)
        return plan

    def _base_delay(self) -> float:
        if self.base_jitter_s == 0.0:
            return self.base_latency_s
        return self.base_latency_s + self._rng.uniform(0.0, self.base_jitter_s)

    def _fire(self, rule: Fault, plan: FaultPlan) -> None:
        if rule.times is not None:
            rule.times -= 1
        rule.fired += 1
        self.fired[rule.kind.value] += 1
        plan.fired.append(rule.kind.value)
        if rule.kind is FaultKind.LATENCY:
            delay = (rule.ms + self._rng.uniform(0.0, rule.jitter_ms)) / 1000.0
            if rule.when == "before":
                plan.before_s += delay
            else:
                plan.after_s += delay
            return
        plan.action = rule.kind
        plan.status = rule.status
        plan.code = rule.code
        plan.message = rule.message
