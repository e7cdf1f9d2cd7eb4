"""Models -> JSON Schema, and requests read into models with defaults."""

import enum
import pathlib
import sys
import unittest
from dataclasses import dataclass, field
from typing import Literal, Optional, TypedDict


ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "sdk" / "python"))

import ws_router  # noqa: E402
from ws_router import InvalidRequest, from_json, json_schema, to_json  # noqa: E402


class Side(enum.Enum):
    """Which side of the book."""

    BID = "bid"
    ASK = "ask"


@dataclass
class Venue:
    name: str
    mic: Optional[str] = None


@dataclass
class Request:
    """Levels of one book."""

    symbol: str = field(metadata={"description": "Ticker"})
    depth: int = field(default=10, metadata={"minimum": 1})
    scale: float = 1.0
    side: Side = Side.BID
    mode: Literal["full", "top"] = "full"
    venues: list[Venue] = field(default_factory=list)


class Tick(TypedDict):
    """A tick."""

    price: float
    size: int


class Loose(TypedDict, total=False):
    note: str


class Schemas(unittest.TestCase):
    def test_dataclass_schema(self):
        s = json_schema(Request)
        self.assertEqual(s["type"], "object")
        self.assertEqual(s["description"], "Levels of one book.")
        self.assertEqual(s["required"], ["symbol"])
        p = s["properties"]
        self.assertEqual(p["symbol"], {"type": "string", "description": "Ticker"})
        self.assertEqual(p["depth"], {"type": "integer", "minimum": 1, "default": 10})
        self.assertEqual(p["scale"], {"type": "number", "default": 1.0})
        self.assertEqual(p["side"], {"enum": ["bid", "ask"], "description": "Which side of the book.",
                                     "default": "bid"})
        self.assertEqual(p["mode"], {"enum": ["full", "top"], "default": "full"})
        self.assertEqual(p["venues"]["items"]["properties"]["mic"],
                         {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None})

    def test_an_enum_without_a_docstring_has_no_description(self):
        class Plain(enum.Enum):
            A = "a"

        self.assertEqual(json_schema(Plain), {"$schema": json_schema(Plain)["$schema"], "enum": ["a"]})

    def test_typeddict_schema(self):
        s = json_schema(Tick)
        self.assertEqual(s["required"], ["price", "size"])
        self.assertEqual(s["properties"]["price"], {"type": "number"})
        self.assertNotIn("required", json_schema(Loose))


class Reading(unittest.TestCase):
    def test_defaults_applied_and_unknown_fields_dropped(self):
        r = from_json(Request, {"symbol": "AAPL", "scale": 2, "extra": 1,
                                "venues": [{"name": "X"}]})
        self.assertEqual(r.depth, 10)
        self.assertIsInstance(r.scale, float)
        self.assertEqual(to_json(r), {"symbol": "AAPL", "depth": 10, "scale": 2.0, "side": "bid",
                                      "mode": "full", "venues": [{"name": "X", "mic": None}]})

    def test_default_topic_of_a_model(self):
        class Book(ws_router.RouteDefinition):
            name = "book"
            Request = Request
            Data = Tick

        topic, keys = Book().resolve('{"symbol": "AAPL", "depth": 5}')
        self.assertEqual(
            topic,
            'book:{"depth":5,"mode":"full","scale":1.0,"side":"bid","symbol":"AAPL","venues":[]}',
        )
        self.assertEqual(keys, [topic])

    def test_bad_requests_are_invalid_requests(self):
        with self.assertRaises(InvalidRequest):
            from_json(Request, {"depth": 5})
        with self.assertRaises(InvalidRequest):
            from_json(Request, {"symbol": "A", "side": "middle"})
        with self.assertRaises(InvalidRequest):
            from_json(Request, {"symbol": 3})


class Export(unittest.TestCase):
    def test_export_outside_componentize_names_no_classes(self):
        # Lets a route's app.py be imported by plain CPython unit tests.
        class Book(ws_router.RouteDefinition):
            name = "book"
            Request = Request
            Data = Tick

        route, delivery = ws_router.export(Book)
        self.assertIsNone(route)
        self.assertIsNone(delivery)
        self.assertIsNone(ws_router.export(Book).Route)

    def test_export_takes_a_route_definition(self):
        with self.assertRaisesRegex(TypeError, "RouteDefinition"):
            ws_router.export(Tick)

    def test_delivery_must_be_a_known_policy(self):
        class Book(ws_router.RouteDefinition):
            name = "book"
            Request = Request
            Data = Tick
            delivery = "latest"

        with self.assertRaisesRegex(ValueError, "queue-all"):
            ws_router.export(Book)


if __name__ == "__main__":
    unittest.main()
