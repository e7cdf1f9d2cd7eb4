"""A route: its name, its models, how its requests map to topics and who
may subscribe, and the glue that exports it as the plugin's
``ws-router:plugin/route`` (with ``delivery``, ``authorize`` and
``retention``)."""

import dataclasses
import datetime
import json
import sys
from typing import Any, ClassVar, NamedTuple, Optional, Sequence

from .schema import InvalidRequest, from_json, json_schema, to_json
from .topic import default_topic


class Forbidden(Exception):
    """Raised by ``RouteDefinition.authorize`` to refuse a subscription; the
    message is the client's error reply."""


#: The host's bounds on a history (it refuses a plugin beyond them at load).
MAX_HISTORY_SIZE = 100_000
MAX_HISTORY_TTL = datetime.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Retention:
    """What the host keeps of a route's updates: a snapshot (each key's
    last update, sent to a new subscription at once) and a history (each
    key's latest ``history_size`` updates, for at most ``history_ttl``,
    which a client that reconnects recovers by offset). The default keeps
    nothing::

        retention = ws_router.Retention(
            snapshot=True, history_size=100, history_ttl=timedelta(hours=1))

    A history has both a size (at most 100,000) and a TTL (at most a day),
    or neither."""

    snapshot: bool = False
    history_size: int = 0
    history_ttl: datetime.timedelta = datetime.timedelta(0)

    def __post_init__(self) -> None:
        if not isinstance(self.snapshot, bool):
            raise TypeError(f"Retention.snapshot must be a bool, not {self.snapshot!r}")
        size = self.history_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_HISTORY_SIZE:
            raise ValueError(
                f"Retention.history_size must be an int from 0 to {MAX_HISTORY_SIZE}, not {size!r}"
            )
        ttl = self.history_ttl
        if not isinstance(ttl, datetime.timedelta) or not datetime.timedelta(0) <= ttl <= MAX_HISTORY_TTL:
            raise ValueError(
                f"Retention.history_ttl must be a timedelta from 0 to one day, not {ttl!r}"
            )
        if (size == 0) != (ttl == datetime.timedelta(0)):
            raise ValueError(
                "Retention: a history needs both history_size and history_ttl (or neither), "
                f"not history_size={size} and history_ttl={ttl}"
            )

    @property
    def history_ttl_ms(self) -> int:
        """The TTL in whole milliseconds, as the contract carries it."""
        return self.history_ttl // datetime.timedelta(milliseconds=1)


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
    #: What the host keeps of the route's updates for new subscriptions
    #: (snapshot) and reconnecting clients (history): a ``Retention``.
    retention: ClassVar[Retention] = Retention()

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
    ``Authorize``, ``retention`` -> ``Retention``). Call it at the end of the app module given to
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
    if not isinstance(definition.retention, Retention):
        raise TypeError(
            f"{definition.__name__}.retention must be a ws_router.Retention, "
            f"not {definition.retention!r}"
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
        from wit_world.exports import retention as wit_retention
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

    settings = wit_retention.RetentionSettings(
        snapshot=route.retention.snapshot,
        history_size=route.retention.history_size,
        history_ttl_ms=route.retention.history_ttl_ms,
    )

    # Not named Retention here: that is the settings class of this module.
    class RetentionExport(exports.Retention):
        def retention_policy(self) -> "wit_retention.RetentionSettings":
            return settings

    caller.update(Route=Route, Delivery=Delivery, Authorize=Authorize, Retention=RetentionExport)
    return Exports(Route, Delivery)
