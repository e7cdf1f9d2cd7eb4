"""A route: its name, its models, how its requests map to topics and who
may subscribe, and the glue that exports it as the plugin's
``ws-router:plugin/route`` (with ``delivery`` and ``authorize``)."""

import json
import sys
from typing import Any, ClassVar, NamedTuple, Optional, Sequence

from .schema import InvalidRequest, from_json, json_schema, to_json
from .topic import default_topic


class Forbidden(Exception):
    """Raised by ``RouteDefinition.authorize`` to refuse a subscription; the
    message is the client's error reply."""


class RouteDefinition:
    """Subclass it, set the class attributes, then export it from your
    ``app.py`` with ``ws_router.export(MyRoute)``."""

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

    def authorize(self, claims: Optional[dict[str, Any]], request: Any) -> None:
        """Whether a client may subscribe, asked on every subscribe before
        the topic is built. ``claims`` are the client's verified token
        claims (a dict), ``None`` when the host runs without
        authentication; ``request`` has its defaults applied. Raise
        ``ws_router.Forbidden(message)`` to refuse: the message is the
        client's error reply. The default allows everything, leaving the
        decision to the host's own checks."""

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

    def check(self, claims_text: str, request_text: str) -> None:
        """Claims and request JSON text -> ``authorize``; raises Forbidden.
        Anything unreadable refuses: a subscription is never allowed by
        accident, and a route's own bug refuses without its details."""
        try:
            claims = json.loads(claims_text)
        except ValueError as e:
            raise Forbidden(f"route {self.name} cannot read the token's claims: {e}") from None
        if claims is not None and not isinstance(claims, dict):
            raise Forbidden(f"route {self.name} cannot read the token's claims: not a JSON object")
        try:
            request = from_json(self.Request, json.loads(request_text))
        except (ValueError, InvalidRequest) as e:
            raise Forbidden(f"invalid request: {e}") from None
        try:
            self.authorize(claims, request)
        except Forbidden:
            raise
        except Exception as e:  # noqa: BLE001 - the route's own bug
            raise Forbidden(f"route {self.name} failed ({type(e).__name__})") from None


class Exports(NamedTuple):
    """Two of the component's exports, as apps written before the
    ``authorize`` interface (0.1.2) unpack them: ``Route, Delivery =
    ws_router.export(...)`` keeps working. ``None`` outside a componentize-py
    build."""

    Route: Optional[type]
    Delivery: Optional[type]


def export(definition: type[RouteDefinition]) -> Exports:
    """Define the component's exports for ``definition`` in the module that
    calls it: componentize-py looks up one class per WIT interface there
    (``route`` -> ``Route``, ``delivery`` -> ``Delivery``, ``authorize`` ->
    ``Authorize``). Call it at the end of the app module given to
    ``componentize-py componentize``::

        ws_router.export(VenueStatus)

    Defining them in the caller, rather than having the app unpack a tuple,
    lets a later contract add an optional interface without changing any
    app. Outside a componentize-py build (plain CPython, a route's unit
    tests) nothing is defined; test the definition itself
    (``VenueStatus().resolve(...)``, ``.check(...)``).
    """
    if not (isinstance(definition, type) and issubclass(definition, RouteDefinition)):
        raise TypeError(f"export() takes a ws_router.RouteDefinition subclass, not {definition!r}")
    if definition.delivery not in ("queue-all", "latest-value"):
        raise ValueError(
            f"{definition.__name__}.delivery must be 'queue-all' or 'latest-value', "
            f"not {definition.delivery!r}"
        )
    route = definition()
    # Built now, so that a model the SDK cannot describe fails the build
    # (and a plain-CPython import of the app), not the first call.
    request_schema = json.dumps(json_schema(route.Request))
    data_schema = json.dumps(json_schema(route.Data))

    # The bindings exist only inside componentize-py's build. In plain
    # CPython (unit tests of a route) the app module still imports; test
    # the definition itself (``VenueStatus().resolve(...)``).
    try:
        from componentize_py_types import Err
        from wit_world import exports
        from wit_world.exports import delivery as wit_delivery
        from wit_world.exports import route as wit
    except ImportError:
        return Exports(None, None)
    caller = sys._getframe(1).f_globals

    class Route(exports.Route):
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

    class Delivery(exports.Delivery):
        def delivery_policy(self) -> "wit_delivery.Policy":
            return policy

    class Authorize(exports.Authorize):
        def authorize(self, claims: str, request: str) -> None:
            try:
                route.check(claims, request)
            except Forbidden as e:
                raise Err(str(e))

    caller.update(Route=Route, Delivery=Delivery, Authorize=Authorize)
    return Exports(Route, Delivery)
