"""Numbers a producer sent as JSON strings go to KRA as JSON numbers.

Producers that post JSON by hand (intake, ``etims-relay enqueue``) often quote amounts
(``"prc": "116"``, the way a ``Decimal`` is written by ``json.dumps(default=str)``). The request
models accept such strings (pydantic's lax mode), so they passed validation and reached KRA
quoted, which the OSCU tables do not allow (NUMBER fields) and which the simulator refuses with
910. This module rewrites, in a copy, every string in a numeric field of the endpoint's request
model into the ``Decimal``/``int`` it spells; the body serialiser then writes a JSON number.
Strings that are not numbers are left as they are, for validation to refuse.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from schemas.requests import REQUEST_MODELS

__all__ = ["with_json_numbers"]

#: field name -> ("decimal" | "int" | "model" | "models", nested model or None)
_Plan = dict[str, tuple[str, type[BaseModel] | None]]


def with_json_numbers(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` whose numeric fields hold numbers, not numeric strings."""
    model = REQUEST_MODELS.get(endpoint)
    if model is None:
        return dict(body)
    return _coerce(model, body)


def _coerce(model: type[BaseModel], body: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(body)
    for name, (kind, nested) in _plan(model).items():
        value = out.get(name)
        if kind == "decimal" and isinstance(value, str):
            out[name] = _decimal(value)
        elif kind == "int" and isinstance(value, str) and value.strip().isdigit():
            out[name] = int(value.strip())
        elif kind == "model" and nested is not None and isinstance(value, Mapping):
            out[name] = _coerce(nested, value)
        elif kind == "models" and nested is not None and isinstance(value, list):
            out[name] = [_coerce(nested, v) if isinstance(v, Mapping) else v for v in value]
    return out


def _decimal(text: str) -> Decimal | str:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return text
    return number if number.is_finite() else text


@cache
def _plan(model: type[BaseModel]) -> _Plan:
    """Which fields of ``model`` are numbers or nested models (computed once per model)."""
    plan: _Plan = {}
    for name, info in model.model_fields.items():
        kind = _kind(info.annotation)
        if kind is not None:
            plan[name] = kind
    return plan


def _kind(annotation: Any) -> tuple[str, type[BaseModel] | None] | None:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return _kind(members[0]) if len(members) == 1 else None
    if origin is list:
        (item,) = get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return ("models", item)
        return None
    if annotation is Decimal:
        return ("decimal", None)
    if annotation is int:
        return ("int", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation)
    return None
