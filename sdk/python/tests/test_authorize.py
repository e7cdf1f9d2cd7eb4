"""RouteDefinition.authorize: the default allows, a route's own refuses with
its message, claims are None without authentication; and the glue
export() defines for componentize-py (run against stand-ins of its
generated bindings, which exist only inside a componentize-py build)."""

import enum
import pathlib
import sys
import types
import unittest
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional


ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "sdk" / "python"))

import ws_router  # noqa: E402
from ws_router import Forbidden  # noqa: E402


@dataclass
class AccountRequest:
    accountId: str
    scope: str = "all"


@dataclass
class Update:
    id: str


class Open(ws_router.RouteDefinition):
    name = "open"
    Request = AccountRequest
    Data = Update


class PerAccount(ws_router.RouteDefinition):
    name = "per-account"
    Request = AccountRequest
    Data = Update

    def authorize(self, claims: Optional[dict[str, Any]], request: AccountRequest) -> None:
        assert request.scope == "all", "defaults are applied before the route sees the request"
        if claims is None:
            return
        accounts = claims.get("accounts")
        if not isinstance(accounts, list) or request.accountId not in accounts:
            raise Forbidden(f'account "{request.accountId}" is not among this token\'s accounts')


class Buggy(ws_router.RouteDefinition):
    name = "buggy"
    Request = AccountRequest
    Data = Update

    def authorize(self, claims, request):
        raise KeyError("secret detail")


A1 = '{"accountId":"A1"}'
TOKEN = '{"sub":"u1","accounts":["A1","A3"],"exp":1700000000}'


class Authorize(unittest.TestCase):
    def test_the_default_allows_everyone(self):
        Open().check("null", A1)
        Open().check('{"sub":"u1"}', A1)
        Open().check('{"sub":"u1","accounts":[]}', A1)

    def test_a_custom_authorize_refuses_with_its_message(self):
        PerAccount().check(TOKEN, A1)
        with self.assertRaises(Forbidden) as refused:
            PerAccount().check(TOKEN, '{"accountId":"A2"}')
        self.assertEqual(str(refused.exception), 'account "A2" is not among this token\'s accounts')
        with self.assertRaises(Forbidden):
            PerAccount().check('{"accounts":"A1"}', A1)

    def test_null_claims_reach_the_route_as_none(self):
        PerAccount().check("null", '{"accountId":"A2"}')

    def test_unreadable_input_and_route_bugs_refuse(self):
        for claims in ["", "[1]", '"u1"', "{not json"]:
            with self.assertRaises(Forbidden, msg=claims) as refused:
                Open().check(claims, A1)
            self.assertIn("route open cannot read the token's claims", str(refused.exception))
        with self.assertRaises(Forbidden) as refused:
            Open().check("null", '{"accountId":5}')
        self.assertTrue(str(refused.exception).startswith("invalid request:"))
        with self.assertRaises(Forbidden) as refused:
            Buggy().check("null", A1)
        self.assertEqual(str(refused.exception), "route buggy failed (KeyError)")


class Bindings:
    """Stand-ins for the modules componentize-py generates from the WIT
    (``componentize-py -d wit -w route-plugin bindings DIR`` shows them)."""

    def __enter__(self):
        class Err(Exception):
            def __init__(self, value):
                super().__init__(value)
                self.value = value

        @dataclass
        class RouteInfo:
            name: str
            version: str
            description: str
            tags: list

        class Policy(enum.Enum):
            QUEUE_ALL = 0
            LATEST_VALUE = 1

        route = types.SimpleNamespace(
            RouteInfo=RouteInfo,
            Subscription=lambda topic, keys: (topic, keys),
            TopicError_InvalidRequest=lambda m: ("invalid-request", m),
            TopicError_Internal=lambda m: ("internal", m),
        )
        @dataclass
        class RetentionSettings:
            snapshot: bool
            history_size: int
            history_ttl_ms: int

        exports = types.SimpleNamespace(
            Route=object,
            Delivery=object,
            Authorize=object,
            Retention=object,
            route=route,
            delivery=types.SimpleNamespace(Policy=Policy),
            retention=types.SimpleNamespace(RetentionSettings=RetentionSettings),
        )
        self.modules = {
            "componentize_py_types": types.SimpleNamespace(Err=Err),
            "wit_world": types.SimpleNamespace(exports=exports),
            "wit_world.exports": exports,
            "wit_world.exports.route": route,
            "wit_world.exports.delivery": exports.delivery,
            "wit_world.exports.retention": exports.retention,
        }
        self.saved = {name: sys.modules.get(name) for name in self.modules}
        sys.modules.update(self.modules)
        self.Err = Err
        return self

    def __exit__(self, *exc):
        for name, module in self.saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module

    def app(self, source: str, **names) -> types.ModuleType:
        """Run ``source`` as an app module, as componentize-py imports it."""
        module = types.ModuleType("app")
        module.__dict__.update(ws_router=ws_router, **names)
        exec(source, module.__dict__)
        return module


class Glue(unittest.TestCase):
    def test_export_defines_every_interface_class_in_the_app_module(self):
        with Bindings() as b:
            app = b.app("ws_router.export(PerAccount)", PerAccount=PerAccount)
            self.assertEqual(app.Route().info().name, "per-account")
            self.assertEqual(app.Delivery().delivery_policy().name, "QUEUE_ALL")
            authorize = app.Authorize()
            self.assertIsNone(authorize.authorize(TOKEN, A1))
            self.assertIsNone(authorize.authorize("null", '{"accountId":"A2"}'))
            with self.assertRaises(b.Err) as refused:
                authorize.authorize(TOKEN, '{"accountId":"A2"}')
            self.assertEqual(refused.exception.value, 'account "A2" is not among this token\'s accounts')

    def test_retention_defaults_to_nothing_and_reaches_the_host_in_milliseconds(self):
        with Bindings() as b:
            app = b.app("ws_router.export(Open)", Open=Open)
            settings = app.Retention().retention_policy()
            self.assertEqual((settings.snapshot, settings.history_size, settings.history_ttl_ms), (False, 0, 0))

            class Kept(Open):
                retention = ws_router.Retention(
                    snapshot=True, history_size=500, history_ttl=timedelta(minutes=10)
                )

            app = b.app("ws_router.export(Kept)", Kept=Kept)
            settings = app.Retention().retention_policy()
            self.assertEqual((settings.snapshot, settings.history_size, settings.history_ttl_ms), (True, 500, 600_000))

    def test_apps_written_for_0_1_1_keep_working(self):
        with Bindings() as b:
            app = b.app("Route, Delivery = ws_router.export(Open)", Open=Open)
            self.assertEqual(app.Route().topics(A1)[0], 'open:{"accountId":"A1","scope":"all"}')
            self.assertIsNone(app.Authorize().authorize('{"sub":"u1"}', A1))

    def test_outside_a_build_nothing_is_defined(self):
        app = types.ModuleType("app")
        app.__dict__.update(ws_router=ws_router, Open=Open)
        exec("exports = ws_router.export(Open)", app.__dict__)
        self.assertEqual(tuple(app.exports), (None, None))
        self.assertFalse(hasattr(app, "Authorize"))


class RetentionSettings(unittest.TestCase):
    def test_out_of_bounds_settings_fail_the_build_with_the_reason(self):
        for kwargs, says in [
            ({"history_size": 100_001, "history_ttl": timedelta(seconds=1)}, "from 0 to 100000"),
            ({"history_size": -1}, "from 0 to 100000"),
            ({"history_size": True}, "from 0 to 100000"),
            ({"history_size": 10, "history_ttl": timedelta(days=1, milliseconds=1)}, "from 0 to one day"),
            ({"history_size": 10, "history_ttl": 60}, "must be a timedelta"),
            ({"history_size": 10}, "needs both history_size and history_ttl"),
            ({"history_ttl": timedelta(seconds=5)}, "needs both history_size and history_ttl"),
        ]:
            with self.assertRaises(ValueError, msg=kwargs) as refused:
                ws_router.Retention(**kwargs)
            self.assertIn(says, str(refused.exception))
        with self.assertRaises(TypeError):
            ws_router.Retention(snapshot=1)

    def test_a_route_whose_retention_is_not_one_is_refused(self):
        class Wrong(Open):
            retention = {"snapshot": True}

        with self.assertRaises(TypeError) as refused:
            ws_router.export(Wrong)
        self.assertIn("Wrong.retention must be a ws_router.Retention", str(refused.exception))


if __name__ == "__main__":
    unittest.main()
