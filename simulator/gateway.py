"""The host in front of the simulated KRA: its paths, and GavaConnect's OAuth gateway.

Two front doors reach the same OSCU product (docs/oscu.md, "Hosts and paths"):

- ``etims-api``: every endpoint at its spec name (``/saveTrnsSalesOsdc``), no OAuth.
- ``gavaconnect``: KRA's developer platform. Several endpoints have their own names there
  (``/sendSalesTransaction``, ``/insert/stockIO``...), an Apigee gateway answers HTTP 401
  without a bearer token, and the token comes from ``GET /v1/token/generate?grant_type=
  client_credentials`` with ``Authorization: Basic base64(key:secret)``.

The path table is written here from the reference, not imported from the client's
(``worker.oscu.endpoints``): if either misreads a path, the pipeline test through this
flavour fails instead of both agreeing on the wrong URL.

Not modelled (docs/oscu.md): token expiry (a token lives until the simulator restarts; a
restart forgets every token, so clients see the 401 they must recover from), consumer
key/secret checking (any non-empty pair gets a token), ``apigee_app_id``, and GavaConnect's
HTTP 400 / ``responseHeader`` wording of business rejections (the simulator answers those with
the usual ``resultCd`` envelope; only the init answer is wrapped in ``responseBody``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = ["FLAVOURS", "GAVACONNECT_PATHS", "TOKEN_PATH", "Gateway", "routes_for"]

FLAVOURS = ("etims-api", "gavaconnect")
#: Where the gavaconnect flavour hands out bearer tokens (KRA: ``/v1/token/generate``).
TOKEN_PATH = "/v1/token/generate"  # noqa: S105 - a path, not a secret
#: Seconds a token is said to live (KRA sends the string ``"3599"``).
TOKEN_EXPIRES_IN = "3599"  # noqa: S105 - a lifetime, not a secret

#: Spec name -> GavaConnect path (docs/oscu.md, "GavaConnect's gateway"); endpoints not
#: listed keep their name.
GAVACONNECT_PATHS: Mapping[str, str] = {
    "selectInitOsdcInfo": "initialize",
    "selectItemClsList": "selectItemClass",
    "selectItemList": "itemInfo",
    "selectBhfList": "branchList",
    "selectCustomer": "customerPinInfo",
    "saveTrnsSalesOsdc": "sendSalesTransaction",
    "selectInvoiceDetails": "selectInvoiceDetail",
    "insertStockIO": "insert/stockIO",
    "saveStockMaster": "save/stockMaster",
    "selectStockMoveList": "selectStockMoveLists",
    "insertTrnsPurchase": "sendPurchaseTransactionInfo",
    "selectTrnsPurchaseSalesList": "getPurchaseTransactionInfo",
}

#: Apigee's answer to a missing, unknown or expired token (live-G), sent with HTTP 401.
UNAUTHORISED: dict[str, Any] = {
    "header": {
        "responseMessage": "Unauthorised-Invalid Access Token",
        "responseCode": 401,
        "customerMessage": "Unauthorised-Invalid Access Token",
    },
    "body": {},
}


def routes_for(flavour: str, endpoints: frozenset[str]) -> dict[str, str]:
    """URL path (without the leading slash) -> spec endpoint name, for one flavour."""
    if flavour == "etims-api":
        return {name: name for name in endpoints}
    if flavour == "gavaconnect":
        return {GAVACONNECT_PATHS.get(name, name): name for name in endpoints}
    raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")


class Gateway:
    """GavaConnect's OAuth layer: issues tokens, then refuses OSCU calls without one."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()
        #: Tokens handed out since start (for tests and stats; never the tokens themselves).
        self.issued = 0

    def issue(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of the token endpoint for this ``Authorization`` header."""
        if not _basic_pair_ok(authorization):
            return 401, {"error": "invalid_client", "error_description": "Basic credentials"}
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        self.issued += 1
        return 200, {"access_token": token, "expires_in": TOKEN_EXPIRES_IN}

    def admits(self, authorization: str | None) -> bool:
        """Whether ``Authorization: Bearer <token>`` names a token this gateway issued."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        return any(hmac.compare_digest(token, known) for known in self._tokens)


def wrap(envelope: dict[str, Any]) -> dict[str, Any]:
    """GavaConnect's outer envelope around an OSCU answer (seen live on ``/initialize``)."""
    return {
        "responseHeader": {"responseCode": 200, "customerMessage": envelope.get("resultMsg")},
        "responseBody": envelope,
    }


def _basic_pair_ok(authorization: str | None) -> bool:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    key, sep, secret = decoded.partition(":")
    return bool(sep and key and secret)
