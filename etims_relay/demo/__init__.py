"""``etims-relay demo``: the whole pipeline on one machine with nothing installed.

Split by concern so each part stays small: :mod:`.scenario` (what is sent and what must come
of it), :mod:`.fleet` (the child processes), :mod:`.watch` (progress from the database),
:mod:`.report` (results, operator actions, ledger cross-check), :mod:`.run` (the steps).
"""

from __future__ import annotations

from etims_relay.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
