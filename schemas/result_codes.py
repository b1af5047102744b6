"""OSCU result codes (spec §4.18) and what each means for a sender.

``resultMsg`` varies between hosts and must never be matched on; the code is the contract.
Success is spelled ``000`` by the spec, and ``0``/``00``/``0000`` on other front doors, so
:func:`normalize` folds those spellings before lookup.
"""

from __future__ import annotations

from enum import StrEnum


class ResultCode(StrEnum):
    """Every code in the spec table plus 905 (seen live for a non-OSCU serial)."""

    #: succeeded
    SUCCESS = "000"
    #: no search result (a success with an empty list)
    NO_RESULT = "001"
    #: client library: error building request URL / header / body
    CLIENT_URL_ERROR = "891"
    CLIENT_HEADER_ERROR = "892"
    CLIENT_BODY_ERROR = "893"
    #: client library: server communication error (transient)
    COMMUNICATION_ERROR = "894"
    CLIENT_METHOD_ERROR = "895"
    #: client library: request status error
    REQUEST_STATUS_ERROR = "896"
    CLIENT_ERROR = "899"
    #: no header information (tin/bhfId/cmcKey missing)
    NO_HEADER = "900"
    #: not a valid device (or wrong cmcKey)
    INVALID_DEVICE = "901"
    #: device already installed (re-initialisation)
    DEVICE_INSTALLED = "902"
    #: only an OSCU device can be verified
    NOT_OSCU_DEVICE = "903"
    #: live sandbox's spelling of 903
    NOT_OSCU_DEVICE_LIVE = "905"
    #: request parameter error (the payload is wrong)
    PARAMETER_ERROR = "910"
    #: no request body
    NO_BODY = "911"
    #: request method error
    METHOD_ERROR = "912"
    #: sales data already declared (duplicate)
    ALREADY_DECLARED = "921"
    #: data can be received only after the data it depends on
    SEQUENCE_ERROR = "922"
    #: maximum number of views exceeded (rate limit)
    RATE_LIMITED = "990"
    #: error during registration / modification / deletion (server side)
    REGISTRATION_ERROR = "991"
    MODIFICATION_ERROR = "992"
    DELETION_ERROR = "993"
    #: overlapped data (duplicate)
    OVERLAPPED = "994"
    #: no downloaded file
    NO_FILE = "995"
    #: unknown error
    UNKNOWN_ERROR = "999"

    @classmethod
    def is_success(cls, code: str) -> bool:
        return normalize(code) in (cls.SUCCESS, cls.NO_RESULT)

    @classmethod
    def is_duplicate(cls, code: str) -> bool:
        return normalize(code) in (cls.ALREADY_DECLARED, cls.OVERLAPPED)

    @classmethod
    def is_auth(cls, code: str) -> bool:
        return normalize(code) in _AUTH

    @classmethod
    def is_server_transient(cls, code: str) -> bool:
        """Server trouble that did not decide the request; retried with backoff."""
        return normalize(code) in _SERVER_TRANSIENT


_AUTH = frozenset({"900", "901", "902", "903", "905"})
_SERVER_TRANSIENT = frozenset({"894", "896", "991", "992", "993", "995", "999"})
_SUCCESS_SPELLINGS = {"0": "000", "00": "000", "0000": "000"}


def normalize(code: str | int | None) -> str:
    """Fold the success spellings other hosts use (``0``, ``00``, ``0000``) into ``000``."""
    text = "" if code is None else str(code).strip()
    return _SUCCESS_SPELLINGS.get(text, text)
