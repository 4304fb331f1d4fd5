"""The one JSON codec of the verdict and report model: typed dataclasses to plain JSON types and back.

Driven by the dataclasses' own type hints, so a field added to the model is written, read and (in
``dhc.report.schema``) described without a second list of keys. Conventions the model declares:

- ``JSON_COMPUTED`` (class attribute): properties written beside the fields (a check's ``action``, a
  verdict's ``exit_code``); read back they are ignored, since the fields determine them.
- a field whose metadata says ``non_finite``: JSON has no NaN or infinity, so such a value is written
  as ``null`` plus ``"non_finite": "nan" | "inf" | "-inf"`` and read back as the float again.

``load`` fails with ``ModelError`` naming the path of the bad key (``checks[2].status``) and what was
expected, never with a KeyError or TypeError from deep inside.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from functools import cache
from typing import Any, Literal, Self, Union, get_args, get_origin

from dhc.model.choices import not_one_of


class ModelError(ValueError):
    """A document that does not fit the model: names the key and what was expected."""


class Coded:
    """A model dataclass's ``to_dict`` and ``from_dict``, both through this codec."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return dump(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """``data`` as this type; ``ModelError`` names the first key that does not fit."""
        return load(cls, data)  # type: ignore[no-any-return]


def non_finite(value: Any) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a value JSON cannot hold, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return None


@cache
def hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types (``from __future__ import annotations`` leaves strings)."""
    return typing.get_type_hints(cls)


def optional_of(tp: Any) -> Any | None:
    """``X`` for ``X | None`` (None for any other type)."""
    if get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        if len(rest) == 1 and len(get_args(tp)) == 2:
            return rest[0]
    return None


def dump(obj: Any) -> Any:
    """Plain JSON types for a model object (dataclass, enum, tuple, dict, scalar)."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [dump(x) for x in obj]
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _dump_dataclass(obj)
    return obj


def _dump_dataclass(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        odd = non_finite(value) if f.metadata.get("non_finite") else None
        out[f.name] = None if odd else dump(value)
        if odd:
            out["non_finite"] = odd
    for name in getattr(obj, "JSON_COMPUTED", ()):
        out[name] = dump(getattr(obj, name))
    return out


def load(tp: Any, data: Any, path: str = "") -> Any:
    """``data`` (plain JSON) as the model type ``tp``; ModelError names the first key that does not fit."""
    inner = optional_of(tp)
    if inner is not None:
        return None if data is None else load(inner, data, path)
    if dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, data, path)
    origin = get_origin(tp)
    if origin in (tuple, list):
        items = [load(get_args(tp)[0], x, f"{path}[{i}]") for i, x in enumerate(_expect(data, list, path, "a list"))]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        value_type = get_args(tp)[1]
        return {k: load(value_type, v, f"{path}.{k}") for k, v in _expect(data, dict, path, "an object").items()}
    return _load_scalar(tp, data, path)


def _load_dataclass(cls: type, data: Any, path: str) -> Any:
    data = _expect(data, dict, path, "an object")
    kwargs = {}
    for f in dataclasses.fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ModelError(f"{where}: missing")
            continue
        value = data[f.name]
        if f.metadata.get("non_finite") and data.get("non_finite") in ("nan", "inf", "-inf"):
            value = float(data["non_finite"])
        kwargs[f.name] = load(hints(cls)[f.name], value, where)
    return cls(**kwargs)


def _load_scalar(tp: Any, data: Any, path: str) -> Any:
    if tp is Any:
        return data
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise ModelError(f"{path}: {not_one_of([e.value for e in tp], data)}") from None
    if get_origin(tp) is Literal:
        if data not in get_args(tp):
            raise ModelError(f"{path}: expected one of {', '.join(map(str, get_args(tp)))}, got {data!r}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ModelError(f"{path}: expected a number, got {str(data)[:60]!r}")
        return data  # an int stays one, so a document read and written again is the same document
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ModelError(f"{path}: expected {tp.__name__}, got {str(data)[:60]!r}")
        return data
    raise AssertionError(f"the codec does not know the model type {tp!r}")


def _expect(data: Any, kind: type, path: str, words: str) -> Any:
    if not isinstance(data, kind):
        raise ModelError(f"{path or 'the document'}: expected {words}, got {str(data)[:60]!r}")
    return data
