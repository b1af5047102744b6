"""``python -m etims_relay``: the same CLI as the ``etims-relay`` console script."""

from __future__ import annotations

from etims_relay.cli import main

if __name__ == "__main__":
    main()
