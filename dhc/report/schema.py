"""``report-v1.schema.json``, generated from the typed report model (``dhc.model.report``).

The schema is never edited by hand: every dataclass of the model becomes an object with exactly its
fields (``additionalProperties: false``), every enum an ``enum``, a field's ``schema`` metadata adds
its constraints (patterns, minimums, descriptions), a class's ``JSON_SCHEMA`` its cross-field rules
(a Passed verdict has no reasons). A test proves the checked-in file equals ``generate()``.

Regenerate after changing the model::

    python -m dhc.report.schema          # writes dhc/report/schema/report-v1.schema.json
    python -m dhc.report.schema --check  # exit 1 when the checked-in file is stale
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from dhc.model.codec import hints, optional_of
from dhc.model.report import Report

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "report-v1.schema.json"
_PRIMITIVES: dict[str, Any] = {
    "timestamp": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z$"},
    "check_id": {"type": "string", "pattern": "^(stress|connectivity)\\.[a-z][a-z0-9_]*$"},
    "non_finite": {"enum": ["nan", "inf", "-inf"],
                   "description": "since 1.1: the measured value was NaN or infinite (JSON has no such numbers); "
                                  "value is null. Such a value is outside any limit."},
}
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def generate() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of ``Report.to_dict()``."""
    defs: dict[str, Any] = dict(_PRIMITIVES)
    root = _object(Report, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:dhc:report:v1",
            "title": "dhc node report, schema 1.x", "description": _doc(Report), **root,
            "$defs": dict(sorted(defs.items()))}


def render() -> str:
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def _object(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    properties, required = {}, []
    for f in dataclasses.fields(cls):
        properties[f.name] = _field(f, hints(cls)[f.name], defs)
        if f.metadata.get("non_finite"):
            properties["non_finite"] = {"$ref": "#/$defs/non_finite"}
        if f.metadata.get("required") or (f.default is dataclasses.MISSING
                                           and f.default_factory is dataclasses.MISSING):
            required.append(f.name)
    for name in getattr(cls, "JSON_COMPUTED", ()):
        properties[name] = _type(typing.get_type_hints(getattr(cls, name).fget)["return"], defs)
        required.append(name)
    extra = dict(getattr(cls, "JSON_SCHEMA", {}))
    for name, more in extra.pop("properties", {}).items():
        properties[name] = properties[name] | more
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties,
            **extra}


def _field(f: dataclasses.Field[Any], tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A field's schema: its type, then its metadata on the non-null part (a null is never a pattern)."""
    keywords = dict(f.metadata.get("schema", {}))
    description = keywords.pop("description", None)
    inner = optional_of(tp)
    nullable = inner is not None or bool(f.metadata.get("non_finite"))
    out = _type(inner if inner is not None else tp, defs) | keywords
    out = _nullable(out) if nullable else out
    return out | ({"description": description} if description else {})


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "enum" in schema:
        return schema | {"enum": [*schema["enum"], None]}
    if "$ref" in schema or "type" not in schema:
        return {"oneOf": [{"type": "null"}, schema]}
    return schema | {"type": [schema["type"], "null"]}


def _type(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    inner = optional_of(tp)
    if inner is not None:
        return _nullable(_type(inner, defs))
    if dataclasses.is_dataclass(tp) or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return _ref(tp, defs)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (tuple, list):
        return {"type": "array", "items": _type(args[0], defs)}
    if origin is dict:
        return {"type": "object"} if args[1] is Any else {"type": "object",
                                                         "additionalProperties": _type(args[1], defs)}
    if origin is Literal:
        return {"enum": list(args)}
    if tp is Any:
        return {}
    return {"type": _SCALARS[tp]}


def _ref(tp: type, defs: dict[str, Any]) -> dict[str, Any]:
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", tp.__name__).lower()
    if name not in defs:
        defs[name] = {}  # reserved first: a type may refer to itself
        defs[name] = {"enum": [e.value for e in tp]} if issubclass(tp, enum.Enum) else _object(tp, defs)
    return {"$ref": f"#/$defs/{name}"}


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        stale = SCHEMA_PATH.read_text(encoding="utf-8") != text
        print(f"{SCHEMA_PATH} is {'stale: run python -m dhc.report.schema' if stale else 'current'}")
        return 1 if stale else 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
