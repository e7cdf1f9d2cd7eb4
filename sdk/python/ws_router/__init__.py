"""Write a ws-router route in Python.

A route is its models (dataclasses or TypedDicts) and, only if it needs them,
a key function, an ``authorize`` method deciding who may subscribe and a
``retention`` (snapshot, history). ``componentize-py`` turns the app module into a WebAssembly
component exporting ``ws-router:plugin/route`` (``wit/ws-router.wit``)::

    from dataclasses import dataclass
    import ws_router

    @dataclass
    class NewsRequest:
        symbol: str
        language: str = "en"

    @dataclass
    class Headline:
        time: int
        title: str

    class News(ws_router.RouteDefinition):
        name = "news"
        Request = NewsRequest
        Data = Headline

    # Defines the classes componentize-py exports, one per WIT interface
    # (Route, Delivery, Authorize, Retention), in this module.
    ws_router.export(News)

Install it into the route's virtual environment (``pip install
<ws-router>/sdk/python``); componentize-py finds it there.
"""

from .route import Exports, Forbidden, Retention, RouteDefinition, export
from .schema import InvalidRequest, from_json, json_schema, to_json
from .topic import canonical_json, default_topic

__all__ = [
    "RouteDefinition",
    "Retention",
    "export",
    "Exports",
    "InvalidRequest",
    "Forbidden",
    "json_schema",
    "from_json",
    "to_json",
    "canonical_json",
    "default_topic",
]
