"""A strict local stand-in for KRA's eTIMS OSCU API, for tests, demos and benchmarks.

Modules, one job each:

- :mod:`~worker.simulator.rules`: what KRA accepts, per write endpoint (devices, numbering,
  items, credit notes, amounts, stock); field shapes (:mod:`~worker.simulator.fields`) and
  amounts (:mod:`~worker.simulator.amounts`) are its own reading of the spec, never
  ``schemas``, adapted by :mod:`~worker.simulator.validate`. :mod:`~worker.simulator.lookups`
  answers the ``select*`` endpoints; :mod:`~worker.simulator.answers` is the answer value.
- :mod:`~worker.simulator.state`: what KRA remembers, rebuilt from the ledger.
- :mod:`~worker.simulator.ledger`: the append-only JSON-lines record of accepted writes.
- :mod:`~worker.simulator.faults`: latency, HTTP errors, result codes, drops, lost answers.
- :mod:`~worker.simulator.server` / :mod:`~worker.simulator.admin`: HTTP/1.1 and
  ``/__admin/``.
- :mod:`~worker.simulator.verify`: the ledger's invariants, checked after a run.
- :mod:`~worker.simulator.runner` / :mod:`~worker.simulator.process`: in-thread and
  subprocess helpers (:func:`run_simulator`, :class:`SimulatorProcess`).
- :mod:`~worker.simulator.samples` / :mod:`~worker.simulator.testing`: valid bodies and a
  small HTTP client for tests, the demo and the benchmark.
"""

from __future__ import annotations

from worker.simulator.core import Simulator
from worker.simulator.faults import Fault, FaultKind, FaultRegistry
from worker.simulator.options import SimulatorOptions
from worker.simulator.process import SimulatorProcess
from worker.simulator.runner import SimulatorHandle, run_simulator, start_simulator
from worker.simulator.verify import VerifyReport, verify_ledger, verify_records

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
