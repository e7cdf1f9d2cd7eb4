"""Models as dataclasses or TypedDicts: JSON Schema derived from them, and
requests read into them with defaults applied.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``list[T]``,
``dict[str, T]``, ``Optional[T]`` / ``T | None``, ``Literal[...]``,
``enum.Enum`` subclasses, nested dataclasses and TypedDicts. Extra JSON
Schema keywords for a dataclass field go in its metadata:
``field(default=10, metadata={"minimum": 1, "description": "Levels per side"})``.
The class docstring (of a dataclass, TypedDict or Enum) becomes the
schema's description.
"""

import collections.abc
import dataclasses
import enum
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


class InvalidRequest(Exception):
    """The request is not acceptable; the message reaches the client."""


_PRIMITIVES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema(model: type) -> dict:
    """The JSON Schema (draft 2020-12) of a dataclass or TypedDict."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    schema.update(_schema_of(model))
    return schema


def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _doc(cls: type) -> str | None:
    doc = cls.__doc__
    # dataclasses invent a docstring (the signature) when there is none.
    if not doc or doc.startswith(cls.__name__ + "("):
        return None
    return " ".join(doc.split())


def _schema_of(tp: Any) -> dict:
    if tp is Any:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        schema: dict = {"enum": [m.value for m in tp]}
        # Only a docstring the enum itself declares (Enum supplies one).
        doc = tp.__dict__.get("__doc__")
        if doc and doc != enum.Enum.__doc__ and not doc.startswith("An enumeration"):
            schema["description"] = " ".join(doc.split())
        return schema
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        props, required = {}, []
        for f in dataclasses.fields(tp):
            prop = _schema_of(hints[f.name])
            prop.update(f.metadata)
            if f.default is not dataclasses.MISSING:
                prop["default"] = to_json(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                prop["default"] = to_json(f.default_factory())
            else:
                required.append(f.name)
            props[f.name] = prop
        return _object(tp, props, required)
    if _is_typeddict(tp):
        hints = _hints(tp)
        props = {name: _schema_of(t) for name, t in hints.items()}
        required = [n for n in hints if n in tp.__required_keys__]
        return _object(tp, props, required)
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        schema = _schema_of(args[0])
        for extra in args[1:]:
            if isinstance(extra, dict):
                schema.update(extra)
            elif isinstance(extra, str):
                schema["description"] = extra
        return schema
    if origin in (typing.Required, typing.NotRequired):
        return _schema_of(args[0])
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        return {"type": "array", "items": _schema_of(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(args[1]) if len(args) > 1 else {}}
    if origin is Union or origin is types.UnionType:
        return {"anyOf": [_schema_of(a) for a in args]}
    raise TypeError(f"cannot describe {tp!r} in JSON Schema")


def _object(cls: type, props: dict, required: list) -> dict:
    schema: dict = {"type": "object"}
    doc = _doc(cls)
    if doc:
        schema["description"] = doc
    schema["properties"] = props
    if required:
        schema["required"] = required
    return schema


def from_json(tp: Any, value: Any) -> Any:
    """Read a JSON value (already valid against ``json_schema(tp)``) into
    ``tp``: dataclasses are built with their defaults, unknown fields are
    dropped, integers sent for ``float`` fields become floats."""
    if tp is Any or tp is None or tp is type(None):
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise InvalidRequest(f"expected a number, got {value!r}")
    if tp in _PRIMITIVES:
        if type(value) is tp or (tp is int and isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise InvalidRequest(f"expected {_PRIMITIVES[tp]}, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise InvalidRequest(f"{value!r} is not one of {[m.value for m in tp]}") from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise InvalidRequest(f"expected an object, got {value!r}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = from_json(hints[f.name], value[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InvalidRequest(f"missing field {f.name!r}")
        return tp(**kwargs)
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            raise InvalidRequest(f"expected an object, got {value!r}")
        hints = _hints(tp)
        return {k: from_json(hints[k], v) for k, v in value.items() if k in hints}
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Annotated, typing.Required, typing.NotRequired):
        return from_json(args[0], value)
    if origin is Literal:
        if value in args:
            return value
        raise InvalidRequest(f"{value!r} is not one of {list(args)}")
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        if not isinstance(value, list):
            raise InvalidRequest(f"expected an array, got {value!r}")
        return [from_json(args[0] if args else Any, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidRequest(f"expected an object, got {value!r}")
        return {k: from_json(args[1] if len(args) > 1 else Any, v) for k, v in value.items()}
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_json(arg, value)
            except InvalidRequest:
                continue
        raise InvalidRequest(f"{value!r} matches none of {args}")
    raise TypeError(f"cannot read {tp!r} from JSON")


def to_json(value: Any) -> Any:
    """A model instance as a plain JSON value (dicts, lists, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    return value
