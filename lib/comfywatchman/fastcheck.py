"""A fast yes/no check of a document against one of our JSON Schemas, for large artifacts.

``jsonschema`` builds a validator object per keyword per value, about 20 us a value: a scan.json of a few
hundred thousand values takes many seconds. This module compiles the subset of JSON Schema our schemas use
(type, enum, const, properties, required, additionalProperties, items, $ref, $defs, oneOf, anyOf, allOf,
minLength, minimum, maximum, minItems, minProperties, pattern, format date-time) into nested closures that
only answer "valid or not". ``artifacts.validate`` asks it first and calls ``jsonschema`` only when the answer
is no, so error messages stay jsonschema's. A schema using any other keyword is not compiled (None), and
the caller falls back to ``jsonschema`` for everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

Check = Callable[[Any], bool]
Resolver = Callable[[str], Mapping[str, Any]]

# Keywords that say nothing about validity.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "$defs",
        "definitions",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_SUPPORTED = _ANNOTATIONS | frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "$ref",
        "oneOf",
        "anyOf",
        "allOf",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "minProperties",
        "pattern",
        "format",
        "uniqueItems",
    }
)


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
}
_MISSING = object()


def _simple_types(schema: Any) -> tuple[type, ...] | None:
    """Return the Python types a schema that only states a ``type`` (no numbers) accepts, else None."""
    if not isinstance(schema, dict) or "type" not in schema or set(schema) - _ANNOTATIONS - {"type"}:
        return None
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not all(k in _PY_TYPES for k in kinds):
        return None
    return tuple(t for k in kinds for t in _PY_TYPES[k])


class Unsupported(Exception):
    """The schema uses a keyword this module does not compile."""


def _type_check(name: str) -> Check:
    if name == "object":
        return lambda v: isinstance(v, dict)
    if name == "array":
        return lambda v: isinstance(v, list)
    if name == "string":
        return lambda v: isinstance(v, str)
    if name == "integer":
        return lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if name == "number":
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if name == "boolean":
        return lambda v: isinstance(v, bool)
    if name == "null":
        return lambda v: v is None
    raise Unsupported(f"type {name!r}")


def _date_time(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value or " " in value


class _Compiler:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise Unsupported("schema is not an object")
        unknown = set(schema) - _SUPPORTED
        if unknown:
            raise Unsupported(", ".join(sorted(unknown)))
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(self._ref(schema["$ref"]))
        object_keys = any(k in schema for k in ("properties", "required", "additionalProperties", "minProperties"))
        array_keys = any(k in schema for k in ("items", "minItems", "maxItems", "uniqueItems"))
        # A plain "type": "object" (or "array") is folded into the object (array) check, one call less a value.
        folded = (schema.get("type") == "object" and object_keys) or (schema.get("type") == "array" and array_keys)
        if "type" in schema and not folded:
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            tests = [_type_check(k) for k in kinds]
            checks.append(tests[0] if len(tests) == 1 else (lambda v, t=tests: any(f(v) for f in t)))
        if "enum" in schema:
            options = schema["enum"]
            try:
                allowed = frozenset((type(x), x) for x in options)
            except TypeError:  # an unhashable option: compare one by one
                checks.append(lambda v, o=options: any(v == x and type(v) is type(x) for x in o))
            else:
                if all(type(x) is str for x in options):
                    # Only strings: a set lookup, no tuple made per value.
                    strings = frozenset(options)
                    checks.append(lambda v, s=strings: type(v) is str and v in s)
                else:

                    def in_enum(v: Any, allowed: frozenset[Any] = allowed) -> bool:
                        try:
                            return (type(v), v) in allowed
                        except TypeError:
                            return False

                    checks.append(in_enum)
        if "const" in schema:
            checks.append(lambda v, c=schema["const"]: v == c and type(v) is type(c))
        if object_keys:
            checks.append(self._object(schema, strict=schema.get("type") == "object"))
        if array_keys:
            checks.append(self._array(schema, strict=schema.get("type") == "array"))
        if any(k in schema for k in ("minLength", "maxLength", "pattern")):
            checks.append(self._string(schema))
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            low, high = schema.get("minimum"), schema.get("maximum")
            xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")

            def bounds(v: Any, low: Any = low, high: Any = high, xlow: Any = xlow, xhigh: Any = xhigh) -> bool:
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    return True
                return (
                    (low is None or v >= low)
                    and (high is None or v <= high)
                    and (xlow is None or v > xlow)
                    and (xhigh is None or v < xhigh)
                )

            checks.append(bounds)
        if schema.get("format") == "date-time":
            checks.append(_date_time)
        for key in ("allOf", "anyOf", "oneOf"):
            if key in schema:
                subs = [self.compile(s) for s in schema[key]]
                if key == "allOf":
                    checks.append(lambda v, s=subs: all(f(v) for f in s))
                elif key == "anyOf":
                    checks.append(lambda v, s=subs: any(f(v) for f in s))
                else:
                    checks.append(lambda v, s=subs: sum(1 for f in s if f(v)) == 1)
        return _all_of(checks)

    def _ref(self, ref: str) -> Check:
        if ref not in self.refs:
            # Placeholder first, so recursive schemas compile.
            target: list[Check] = []
            self.refs[ref] = lambda v, t=target: t[0](v)
            target.append(self.compile(self.resolve(ref)))
        return self.refs[ref]

    def _object(self, schema: Mapping[str, Any], strict: bool = False) -> Check:
        declared = schema.get("properties") or {}
        # Properties that only state a type are checked inline with isinstance: no call per value.
        simple = tuple((k, t) for k, sub in declared.items() if (t := _simple_types(sub)) is not None)
        others = tuple((k, self.compile(sub)) for k, sub in declared.items() if _simple_types(sub) is None)
        required = frozenset(schema.get("required") or ())
        extra = schema.get("additionalProperties", True)
        extra_check = None if extra is True else (lambda v: False) if extra is False else self.compile(extra)
        min_props = schema.get("minProperties")
        known = frozenset(declared)
        missing = _MISSING

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return not strict
            if required and not required <= value.keys():
                return False
            if min_props is not None and len(value) < min_props:
                return False
            for key, types in simple:
                item = value.get(key, missing)
                if item is not missing and not isinstance(item, types):
                    return False
            for key, sub in others:
                item = value.get(key, missing)
                if item is not missing and not sub(item):
                    return False
            if extra_check is not None and not value.keys() <= known:
                if not known:  # a map: every value is checked by the one schema
                    return all(map(extra_check, value.values()))
                for key in value.keys() - known:
                    if not extra_check(value[key]):
                        return False
            return True

        return check

    def _array(self, schema: Mapping[str, Any], strict: bool = False) -> Check:
        item = self.compile(schema["items"]) if "items" in schema else None
        low, high, unique = schema.get("minItems"), schema.get("maxItems"), schema.get("uniqueItems", False)

        def check(value: Any) -> bool:
            if not isinstance(value, list):
                return not strict
            if (low is not None and len(value) < low) or (high is not None and len(value) > high):
                return False
            if unique and len({repr(v) for v in value}) != len(value):
                return False
            return item is None or all(map(item, value))

        return check

    def _string(self, schema: Mapping[str, Any]) -> Check:
        low, high = schema.get("minLength"), schema.get("maxLength")
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None

        def check(value: Any) -> bool:
            if not isinstance(value, str):
                return True
            if (low is not None and len(value) < low) or (high is not None and len(value) > high):
                return False
            return pattern is None or pattern.search(value) is not None

        return check


def _all_of(checks: list[Check]) -> Check:
    """Return a check passing when every one of ``checks`` does (two or three chained without a loop)."""
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    if len(checks) == 3:
        first, second, third = checks
        return lambda v: first(v) and second(v) and third(v)
    return lambda v, c=tuple(checks): all(f(v) for f in c)


def compile_schema(schema: Mapping[str, Any], resolve: Resolver) -> Check | None:
    """Return a function telling whether a document is valid against ``schema``, or None when the schema
    uses a keyword this module does not handle. ``resolve`` turns a ``$ref`` into its schema."""
    try:
        return _Compiler(resolve).compile(schema)
    except (Unsupported, re.error, KeyError, TypeError):
        return None
