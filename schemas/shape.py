"""Is each payload field of the right JSON type? Checked before any arithmetic.

Completing a body (:mod:`schemas.completion`, :mod:`schemas.vat`) computes amounts from the
payload before the request model sees it, so a field of the wrong JSON type (an ``itemList``
that is an object, a string or ``[1]``, a price that is a list) must be refused first, at
its own path, or it fails deep in the arithmetic. Only the JSON shape is checked here
(list, object, or a single value); the request model checks the values themselves.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Union

from pydantic import BaseModel

__all__ = ["shape_errors"]

_LIST, _OBJECT, _VALUE = "a list", "an object", "a single value (text or number)"

#: The expected shape of a field; for a list of objects, the item model; for an object, its
#: model (``None`` for a free-form mapping).
_Shape = tuple[str, type[BaseModel] | None]


def shape_errors(payload: Mapping[str, Any], model: type[BaseModel]) -> list[tuple[str, str]]:
    """(path, message) for each field of ``payload`` whose JSON type ``model`` cannot take.

    Paths are relative to the payload (``itemList``, ``itemList.0``, ``itemList.0.prc``);
    unknown fields are left to the model, which names them.
    """
    return list(_errors(payload, model, ""))


def _errors(value: Mapping[str, Any], model: type[BaseModel], prefix: str) -> Any:
    shapes = _field_shapes(model)
    for name, item in value.items():
        if not isinstance(name, str) or name not in shapes:
            continue
        path = f"{prefix}{name}"
        kind, inner = shapes[name]
        if item is None:
            continue  # absent or optional: the model says whether that is allowed
        if kind == _LIST:
            if not isinstance(item, list):
                yield path, f"must be {_LIST}, got {_json_type(item)}"
                continue
            if inner is None:
                continue
            for index, element in enumerate(item):
                if not isinstance(element, Mapping):
                    yield f"{path}.{index}", f"must be {_OBJECT}, got {_json_type(element)}"
                else:
                    yield from _errors(element, inner, f"{path}.{index}.")
        elif kind == _OBJECT:
            if not isinstance(item, Mapping):
                yield path, f"must be {_OBJECT}, got {_json_type(item)}"
            elif inner is not None:
                yield from _errors(item, inner, f"{path}.")
        elif isinstance(item, list | Mapping):
            yield path, f"must be {_VALUE}, got {_json_type(item)}"


@lru_cache(maxsize=128)
def _field_shapes(model: type[BaseModel]) -> dict[str, _Shape]:
    shapes: dict[str, _Shape] = {}
    for name, field in model.model_fields.items():
        shape = _shape(field.annotation)
        shapes[field.alias or name] = shape
    return shapes


def _shape(annotation: Any) -> _Shape:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _shape(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _shape(options[0]) if len(options) == 1 else (_VALUE, None)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        args = typing.get_args(annotation)
        item = _shape(args[0]) if args else (_VALUE, None)
        return _LIST, item[1] if item[0] == _OBJECT else None
    if origin in (dict, Mapping) or annotation is dict:
        return _OBJECT, None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _OBJECT, annotation
    return _VALUE, None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    return "a number"
