"""A strict local stand-in for KRA's eTIMS OSCU API, for tests, demos and benchmarks.

Modules, one job each:

- :mod:`~simulator.rules`: what KRA accepts, per write endpoint (devices, numbering,
  items, credit notes, amounts, stock); field shapes (:mod:`~simulator.fields`) and
  amounts (:mod:`~simulator.amounts`) are its own reading of the spec, never
  ``schemas``, adapted by :mod:`~simulator.validate`. :mod:`~simulator.lookups`
  answers the ``select*`` endpoints; :mod:`~simulator.answers` is the answer value.
- :mod:`~simulator.state`: what KRA remembers, rebuilt from the ledger.
- :mod:`~simulator.ledger`: the append-only JSON-lines record of accepted writes.
- :mod:`~simulator.faults`: latency, HTTP errors, result codes, drops, lost answers.
- :mod:`~simulator.server` / :mod:`~simulator.admin`: HTTP/1.1 and
  ``/__admin/``.
- :mod:`~simulator.verify`: the ledger's invariants, checked after a run.
- :mod:`~simulator.runner` / :mod:`~simulator.process`: in-thread and
  subprocess helpers (:func:`run_simulator`, :class:`SimulatorProcess`).
- :mod:`~simulator.samples` / :mod:`~simulator.testing`: valid bodies and a
  small HTTP client for tests, the demo and the benchmark.
"""

from __future__ import annotations

from simulator.core import Simulator
from simulator.faults import Fault, FaultKind, FaultRegistry
from simulator.options import SimulatorOptions
from simulator.process import SimulatorProcess
from simulator.runner import SimulatorHandle, run_simulator, start_simulator
from simulator.verify import VerifyReport, verify_ledger, verify_records

__all__ = [
    "Fault",
    "FaultKind",
    "FaultRegistry",
    "Simulator",
    "SimulatorHandle",
    "SimulatorOptions",
    "SimulatorProcess",
    "VerifyReport",
    "run_simulator",
    "start_simulator",
    "verify_ledger",
    "verify_records",
]
