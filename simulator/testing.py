"""Small helpers for tests that talk to a simulator over HTTP.

Kept in the package (as procrastinate keeps ``testing.py``) so unit, integration and e2e
tests, the demo and the benchmark share one way to initialise devices and post bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SimDevice:
    """An initialised device: its identity and key (tests may see the key; logs may not)."""

    tin: str
    bhf_id: str
    cmc_key: str
    info: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"tin": self.tin, "bhfId": self.bhf_id, "cmcKey": self.cmc_key}


class SimClient:
    """A thin httpx wrapper: ``init`` a device, ``post`` bodies, get envelopes back as dicts."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def init(self, tin: str, bhf_id: str = "00", serial: str | None = None) -> SimDevice:
        """``selectInitOsdcInfo``; raises if the simulator does not answer 000."""
        body = {"tin": tin, "bhfId": bhf_id, "dvcSrlNo": serial or f"SIM-{tin}-{bhf_id}"}
        answer = self.http.post("/selectInitOsdcInfo", json=body).json()
        if answer["resultCd"] != "000":
            raise AssertionError(f"init failed: {answer}")
        info = answer["data"]["info"]
        return SimDevice(tin, bhf_id, info.get("cmcKey") or answer["cmcKey"], info)

    def post(
        self, endpoint: str, body: Any, device: SimDevice | None = None, **headers: str
    ) -> dict[str, Any]:
        """POST ``body`` with the device's headers (plus ``headers``); the envelope as a dict."""
        sent = dict(device.headers) if device else {}
        sent.update(headers)
        response = self.http.post(f"/{endpoint}", json=body, headers=sent)
        response.raise_for_status()
        envelope: dict[str, Any] = response.json()
        return envelope

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
