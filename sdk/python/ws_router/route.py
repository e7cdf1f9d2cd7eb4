"""A route: its name, its models and how its requests map to topics, and
the glue that exports it as the plugin's ``ws-router:plugin/route``."""

import json
import sys
from typing import Any, ClassVar, Sequence

from .schema import InvalidRequest, from_json, json_schema, to_json
from .topic import default_topic


class Route:
    """Subclass it, set the class attributes, then export it from your
    ``app.py`` with ``Route = ws_router.export(MyRoute)``."""

    #: The name clients use in frame types: ``<name>.subscribe``.
    name: ClassVar[str]
    #: The plugin's own version (semver).
    version: ClassVar[str] = "0.1.0"
    #: One paragraph for humans (AsyncAPI document, docs page).
    description: ClassVar[str] = ""
    #: Groups routes in the generated documentation.
    tags: ClassVar[Sequence[str]] = ()
    #: What a client sends to subscribe: a dataclass or TypedDict.
    Request: ClassVar[type]
    #: What updates carry: a dataclass or TypedDict.
    Data: ClassVar[type]
    #: What the host does when a client cannot keep up: ``"queue-all"``
    #: (disconnect it, close code 4008) or ``"latest-value"`` (replace its
    #: queued update of a topic by the newer one).
    delivery: ClassVar[str] = "queue-all"

    def topic(self, request: Any) -> str:
        """The name of the subscription, sent back to the client. Keep the
        default (the canonical topic, which browser clients compute
        themselves) unless no client depends on it."""
        return default_topic(self.name, to_json(request))

    def keys(self, request: Any, topic: str) -> list[str]:
        """The keys publications are routed by (each starting with
        ``<name>:``). The default routes by the topic itself."""
        return [topic]

    # --- what the glue calls -------------------------------------------------

    def resolve(self, request_text: str) -> tuple[str, list[str]]:
        """Request JSON text -> (topic, keys); raises InvalidRequest."""
        try:
            value = json.loads(request_text)
        except ValueError as e:
            raise InvalidRequest(f"request is not JSON: {e}") from None
        request = from_json(self.Request, value)
        topic = self.topic(request)
        return topic, list(self.keys(request, topic))


def export(route_class: type[Route]) -> type:
    """The class componentize-py exports as ``ws-router:plugin/route``.

    Assign it to the name ``Route`` in the app module given to
    ``componentize-py componentize``. It also defines ``Delivery`` there
    (the ``ws-router:plugin/delivery`` export, declaring
    ``route_class.delivery``).
    """
    if route_class.delivery not in ("queue-all", "latest-value"):
        raise ValueError(
            f"{route_class.__name__}.delivery must be 'queue-all' or 'latest-value', "
            f"not {route_class.delivery!r}"
        )
    # The bindings exist only inside componentize-py's build. In plain
    # CPython (unit tests of a route) the app module still imports: it gets
    # the route class back, which has everything but the WIT glue.
    try:
        from componentize_py_types import Err
        from wit_world import exports
        from wit_world.exports import delivery as wit_delivery
        from wit_world.exports import route as wit
    except ImportError:
        return route_class

    route = route_class()
    request_schema = json.dumps(json_schema(route.Request))
    data_schema = json.dumps(json_schema(route.Data))

    class _Route(exports.Route):
        def info(self) -> "wit.RouteInfo":
            return wit.RouteInfo(
                name=route.name,
                version=route.version,
                description=route.description,
                tags=list(route.tags),
            )

        def request_schema(self) -> str:
            return request_schema

        def data_schema(self) -> str:
            return data_schema

        def topics(self, request: str) -> "wit.Subscription":
            try:
                topic, keys = route.resolve(request)
            except InvalidRequest as e:
                raise Err(wit.TopicError_InvalidRequest(str(e)))
            except Exception as e:  # noqa: BLE001 - the route's own bug
                # Name the kind of failure only: the message reaches clients.
                raise Err(wit.TopicError_Internal(f"route {route.name} failed ({type(e).__name__})"))
            return wit.Subscription(topic=topic, keys=keys)

    policy = (
        wit_delivery.Policy.LATEST_VALUE
        if route.delivery == "latest-value"
        else wit_delivery.Policy.QUEUE_ALL
    )

    class _Delivery(exports.Delivery):
        def delivery_policy(self) -> "wit_delivery.Policy":
            return policy

    _Route.__name__ = "Route"
    _Delivery.__name__ = "Delivery"
    # componentize-py looks the exports up by name in the app module: the
    # module calling `Route = export(...)`. Defining `Delivery` there keeps a
    # route's app.py to that one line (an app that defines its own wins).
    sys._getframe(1).f_globals.setdefault("Delivery", _Delivery)
    return _Route
