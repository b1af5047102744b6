"""OSCU HTTP client: every call returns a :class:`CallOutcome`, never a network exception."""

from __future__ import annotations

from worker.oscu.auth import ClientCredentialsTokenProvider, TokenProvider
from worker.oscu.client import DEFAULT_LIMITS, DEFAULT_TIMEOUT, OscuClient
from worker.oscu.credentials import DeviceCredentials
from worker.oscu.endpoints import ENDPOINTS, INIT_ENDPOINT
from worker.oscu.errors import (
    BadEnvelope,
    MaybeSent,
    NotSent,
    OscuError,
    TokenError,
    TokenRejected,
    map_transport_errors,
)
from worker.oscu.outcome import CallOutcome, OutcomeKind

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "ENDPOINTS",
    "INIT_ENDPOINT",
    "BadEnvelope",
    "CallOutcome",
    "ClientCredentialsTokenProvider",
    "DeviceCredentials",
    "MaybeSent",
    "NotSent",
    "OscuClient",
    "OscuError",
    "OutcomeKind",
    "TokenError",
    "TokenProvider",
    "TokenRejected",
    "map_transport_errors",
]
