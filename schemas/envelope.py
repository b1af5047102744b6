"""Reading OSCU responses (the spec's response envelope and field tables), defensively.

Responses come from several front doors with small differences: keys with trailing blanks
(``"curRcptNo "`` in the spec samples), success spelled ``0``/``00``/``0000``, GavaConnect's
``responseHeader``/``responseBody`` wrapper, VSCU field names (``rcptNo``,
``vsdcRcptPbctDate``), ``sdicId`` for ``sdcId``. Parsing a *signed* answer must not fail over
such details, or a receipt KRA already holds would look lost; so these models read leniently
and ignore unknown fields, unlike the request models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.result_codes import ResultCode, normalize

__all__ = ["Envelope", "InitInfo", "InvoiceDetails", "SaleSignature", "strip_keys"]

_DASHED_DATE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?")


def strip_keys(value: Any) -> Any:
    """Copy ``value`` with every mapping key stripped of surrounding whitespace, recursively."""
    if isinstance(value, Mapping):
        return {
            (key.strip() if isinstance(key, str) else key): strip_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [strip_keys(item) for item in value]
    return value


def _normalize_date_time(value: Any) -> Any:
    """``2024-04-15 15:30:39.0`` (``selectInvoiceDetails``) becomes ``20240415153039``;
    anything else is kept as sent, so a signature never fails over its timestamp."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        match = _DASHED_DATE_TIME.fullmatch(text)
        return "".join(match.groups()) if match else text
    return value


def _result_code(value: Any) -> Any:
    """``0``, ``"0000"`` and friends mean success; an integer ``1`` is code ``001``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:03d}"
    return normalize(value) if isinstance(value, str) else value


class Envelope(BaseModel):
    """``{resultCd, resultMsg, resultDt, data}``; ``resultCd`` is normalised (``0`` -> ``000``).

    ``data`` is left out of the repr: for initialisation it holds the cmcKey.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    resultCd: str
    resultMsg: str = ""
    resultDt: str | None = None
    data: Any = Field(default=None, repr=False)

    _norm_code = field_validator("resultCd", mode="before")(_result_code)

    @field_validator("resultMsg", mode="before")
    @classmethod
    def _message_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def is_success(self) -> bool:
        """``000`` or ``001`` (no search result is an empty success, not an error)."""
        return ResultCode.is_success(self.resultCd)

    @classmethod
    def parse(cls, raw: Any) -> Envelope:
        """Read a response body (JSON text, bytes or decoded object) from any front door.

        Raises ``ValueError`` (pydantic's ``ValidationError`` or a JSON error) when there is
        no envelope to be found, which callers treat as a bad answer.
        """
        if isinstance(raw, str | bytes | bytearray):
            raw = json.loads(raw)
        body = strip_keys(raw)
        if isinstance(body, Mapping):
            body = _unwrap_gavaconnect(body)
        return cls.model_validate(body)


def _unwrap_gavaconnect(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """GavaConnect nests the OSCU envelope in ``responseBody``; a rejection arrives as
    ``responseBody: null`` plus ``responseHeader.responseCode`` (e.g. 400), and gateway faults
    as ``header``/``body``. The HTTP-style code is kept as ``resultCd`` (it is not an OSCU
    code, so the worker's classifier sees it as unknown rather than as success)."""
    if "resultCd" in body:
        return _lift_root_cmc_key(body)
    for header_key, body_key in (("responseHeader", "responseBody"), ("header", "body")):
        if header_key not in body and body_key not in body:
            continue
        inner = body.get(body_key)
        if isinstance(inner, Mapping) and "resultCd" in inner:
            return _lift_root_cmc_key(inner)
        header = body.get(header_key)
        if isinstance(header, Mapping) and "responseCode" in header:
            message = next(
                (
                    str(header[key])
                    for key in ("debugMessage", "customerMessage", "responseMessage")
                    if header.get(key)
                ),
                "",
            )
            return {"resultCd": str(header["responseCode"]), "resultMsg": message, "data": None}
    return body


def _lift_root_cmc_key(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Paybill notes the sandbox may answer init with ``cmcKey`` at the root; keep it in
    ``data`` (hidden from repr) so :meth:`InitInfo.from_data` finds it."""
    if "cmcKey" not in body:
        return body
    data = body.get("data")
    merged = dict(data) if isinstance(data, Mapping) else {}
    merged.setdefault("cmcKey", body["cmcKey"])
    return {key: value for key, value in body.items() if key != "cmcKey"} | {"data": merged}


class _Lenient(BaseModel):
    """Response rows: unknown fields ignored, numbers accepted where text is expected."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _stripped_keys(cls, value: Any) -> Any:
        return strip_keys(value)


class SaleSignature(_Lenient):
    """``saveTrnsSalesOsdc`` answer: what makes a receipt valid. Reads the VSCU spellings
    ``rcptNo`` and ``vsdcRcptPbctDate`` too; ``sdcDateTime`` is normalised to D14."""

    curRcptNo: int = Field(validation_alias=AliasChoices("curRcptNo", "rcptNo"))
    totRcptNo: int
    intrlData: str
    rcptSign: str
    sdcDateTime: str = Field(validation_alias=AliasChoices("sdcDateTime", "vsdcRcptPbctDate"))
    #: Only VSCU answers carry these; OSCU takes them from initialisation.
    sdcId: str | None = None
    mrcNo: str | None = None

    _norm_dt = field_validator("sdcDateTime", mode="before")(_normalize_date_time)

    @classmethod
    def from_data(cls, data: Any) -> SaleSignature:
        """Build from an envelope's ``data``; raises ``ValueError`` if the signature is not
        there (which, after a ``000``, the worker must treat as an unknown outcome)."""
        return cls.model_validate(data)


class InitInfo(_Lenient):
    """``selectInitOsdcInfo`` ``data.info``. Only ``cmcKey`` is required; it is a
    ``SecretStr`` so neither a repr nor a log line can show it."""

    tin: str | None = None
    taxprNm: str | None = None
    bsnsActv: str | None = None
    bhfId: str | None = None
    bhfNm: str | None = None
    bhfOpenDt: str | None = None
    prvncNm: str | None = None
    dstrtNm: str | None = None
    sctrNm: str | None = None
    locDesc: str | None = None
    hqYn: str | None = None
    mgrNm: str | None = None
    mgrTelNo: str | None = None
    mgrEmail: str | None = None
    dvcId: str | None = None
    #: The spec table spells it ``sdicId``; samples and live hosts say ``sdcId``.
    sdcId: str | None = Field(default=None, validation_alias=AliasChoices("sdcId", "sdicId"))
    mrcNo: str | None = None
    cmcKey: SecretStr

    @classmethod
    def from_data(cls, data: Any) -> InitInfo:
        """Find the info in ``data.info`` (spec) or ``data`` itself, with a ``cmcKey`` that
        may sit one level up (see :func:`_lift_root_cmc_key`)."""
        data = strip_keys(data)
        if not isinstance(data, Mapping):
            raise ValueError("initialisation answer carries no data")
        info = data.get("info")
        if isinstance(info, Mapping):
            if "cmcKey" not in info and "cmcKey" in data:
                info = {**info, "cmcKey": data["cmcKey"]}
            return cls.model_validate(info)
        return cls.model_validate(data)


class InvoiceDetails(_Lenient):
    """``selectInvoiceDetails`` answer: the stored sale (``data.salesList[0]``) and its
    signature, used to recover a receipt after a duplicate answer (README, invariant 2).

    ``signature`` is ``None`` when the stored sale carries no readable signature: KRA holding
    the sale is still worth knowing (the job is accepted; the receipt is flagged as lost).
    ``trdInvcNo`` tells whether the number KRA holds belongs to *our* sale.
    """

    invcNo: int | None = None
    orgInvcNo: int | None = None
    trdInvcNo: str | None = None
    rcptTyCd: str | None = None
    custTin: str | None = None
    signature: SaleSignature | None = None
    #: The whole stored sale as KRA returned it (keys stripped).
    sale: dict[str, Any] = Field(default_factory=dict, repr=False)

    @classmethod
    def from_data(cls, data: Any) -> InvoiceDetails | None:
        """``None`` when KRA holds no such invoice (``001``, empty or missing list)."""
        data = strip_keys(data)
        sales = data.get("salesList") if isinstance(data, Mapping) else None
        if not isinstance(sales, list) or not sales or not isinstance(sales[0], Mapping):
            return None
        sale = dict(sales[0])
        receipt = sale.get("receipt")
        # The signature normally sits in ``receipt``; fall back to the sale's own fields.
        signature_fields = {**sale, **receipt} if isinstance(receipt, Mapping) else sale
        try:
            signature: SaleSignature | None = SaleSignature.model_validate(signature_fields)
        except ValidationError:
            signature = None
        return cls.model_validate(
            {
                **{key: sale.get(key) for key in _INVOICE_KEYS},
                "signature": signature,
                "sale": sale,
            }
        )


_INVOICE_KEYS = ("invcNo", "orgInvcNo", "trdInvcNo", "rcptTyCd", "custTin")
