"""The canonical topic: ``<route>:<canonical JSON of the request>``.

Byte-identical to the Rust SDK (``sdk/rust/src/topic.rs``) and the JavaScript
SDK, checked against the shared vectors in ``tests/topic-vectors.json``:

* object keys sorted recursively, by Unicode code point;
* no whitespace;
* ``None`` (JSON ``null``) becomes the empty string ``""``;
* strings keep non-ASCII characters as UTF-8; only ``"``, ``\\`` and control
  characters are escaped;
* integers print as integers, floats as ``repr`` does (``1.0``, ``1e-05``);
* integers outside the 64-bit range (below -2**63 or above 2**64-1) are
  treated as floats, as the Rust host's JSON parser reads them.
"""

import json
from typing import Any

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a JSON value (dict, list, str, int, float,
    bool or None)."""
    return json.dumps(
        _prepare(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def default_topic(route: str, request: Any) -> str:
    """``<route>:<canonical JSON of request>``."""
    return route + ":" + canonical_json(request)


def _prepare(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool) or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        # The Rust host (serde_json) reads integers beyond 64 bits as floats;
        # do the same so that every language agrees on the topic.
        return value if _I64_MIN <= value <= _U64_MAX else float(value)
    if isinstance(value, dict):
        return {str(k): _prepare(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_prepare(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")
