// The JavaScript topic builder against the shared vectors
// (tests/topic-vectors.json), and defineRoute on TypeBox models.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { canonicalJson, compareCodePoints, defaultTopic, defineRoute, Forbidden, InvalidRequest, Type } from "ws-router-sdk";

const vectors = JSON.parse(
  readFileSync(new URL("../../../tests/topic-vectors.json", import.meta.url), "utf8"),
).vectors;

test("shared topic vectors, byte for byte", () => {
  assert.ok(vectors.length > 10);
  for (const v of vectors) {
    const got = defaultTopic(v.route, JSON.parse(v.request), v.schema);
    const expected = v.topic_js ?? v.topic;
    assert.deepEqual(Buffer.from(got, "utf8"), Buffer.from(expected, "utf8"), v.note);
  }
});

test("the schema, not the number, decides float or integer", () => {
  const schema = Type.Object({
    f: Type.Number(),
    i: Type.Integer(),
    o: Type.Union([Type.Number(), Type.Null()]),
    u: Type.Union([Type.Integer(), Type.Number()]),
    r: Type.Record(Type.String(), Type.Number()),
  });
  assert.equal(
    canonicalJson({ f: 1, i: 1, o: 2, u: 3, r: { a: 4 }, x: 5, y: 2.5 }, schema),
    '{"f":1.0,"i":1,"o":2.0,"r":{"a":4.0},"u":3,"x":5,"y":2.5}',
  );
  assert.equal(canonicalJson(-0), "0");
  assert.equal(canonicalJson(-0, Type.Number()), "-0.0");
  assert.throws(() => canonicalJson(NaN), TypeError);
  assert.ok(compareCodePoints("\uffff", "😀") < 0);
  assert.ok(compareCodePoints("a", "ab") < 0);
});

const { route, delivery } = defineRoute({
  name: "book",
  request: Type.Object({
    symbol: Type.String({ description: "Ticker" }),
    depth: Type.Integer({ default: 10 }),
    tick: Type.Number({ default: 1 }),
    venue: Type.Optional(Type.String()),
    levels: Type.Array(Type.Object({ price: Type.Number() }), { default: [] }),
  }),
  data: Type.Object({ time: Type.Integer() }),
  keys(request, topic) {
    if (request.symbol === "BAD") throw new InvalidRequest("no BAD");
    if (request.symbol === "BUG") throw new Error("secret detail");
    return [topic];
  },
});

test("schemas: defaults not required, descriptions kept, $schema", () => {
  const schema = JSON.parse(route.requestSchema());
  assert.deepEqual(schema.required, ["symbol"]);
  assert.equal(schema.properties.depth.default, 10);
  assert.equal(schema.properties.symbol.description, "Ticker");
  assert.match(schema.$schema, /2020-12/);
  assert.deepEqual(route.info(), { name: "book", version: "0.1.0", description: "", tags: [] });
});

test("topics: defaults applied, unknown fields dropped, numbers typed by the schema", () => {
  const topic = 'book:{"depth":10,"levels":[{"price":2.0}],"symbol":"AAPL","tick":1.0}';
  assert.deepEqual(route.topics('{"symbol":"AAPL","extra":1,"levels":[{"price":2}]}'), { topic, keys: [topic] });
  assert.deepEqual(route.topics('{"levels":[{"price":2.0}],"tick":1.0,"symbol":"AAPL"}').topic, topic);
  assert.throws(() => route.topics('{"symbol":"BAD"}'), (e) => e.payload.tag === "invalid-request" && e.payload.val === "no BAD");
  assert.throws(() => route.topics('{"symbol":"BUG"}'), (e) => e.payload.tag === "internal" && !e.payload.val.includes("secret"));
  assert.throws(() => route.topics("{not json"), (e) => e.payload.tag === "invalid-request");
});

test("the request a route sees holds plain numbers", () => {
  let seen;
  const { route: r } = defineRoute({
    name: "q",
    request: Type.Object({ tick: Type.Number({ default: 0.01 }) }),
    data: Type.Object({}),
    keys(request, topic) {
      seen = request;
      return [topic];
    },
  });
  assert.equal(r.topics("{}").topic, 'q:{"tick":0.01}');
  assert.equal(seen.tick === 0.01, true);
  assert.equal(r.topics('{"tick":1}').topic, 'q:{"tick":1.0}');
  assert.equal(typeof seen.tick, "number");
});

test("delivery policy: queue-all by default, latest-value on request, nothing else", () => {
  assert.equal(delivery.deliveryPolicy(), "queue-all");
  const latest = defineRoute({ name: "q", delivery: "latest-value", request: Type.Object({}), data: Type.Object({}) });
  assert.equal(latest.delivery.deliveryPolicy(), "latest-value");
  assert.throws(
    () => defineRoute({ name: "q", delivery: "latest", request: Type.Object({}), data: Type.Object({}) }),
    /delivery must be "queue-all" or "latest-value"/,
  );
  assert.throws(
    () => defineRoute({ name: "q", request: { type: "object" }, data: Type.Object({}) }),
    /request must be a TypeBox schema/,
  );
});

test("retention: nothing kept by default, settings as given, out of bounds refused", () => {
  assert.deepEqual(route[Symbol.for("ws-router-sdk.plugin")].retention.retentionPolicy(), {
    snapshot: false,
    historySize: 0,
    historyTtlMs: 0,
  });
  const bars = (retention) => defineRoute({ name: "b", retention, request: Type.Object({}), data: Type.Object({}) });
  assert.deepEqual(bars({ snapshot: true, historySize: 500, historyTtlMs: 600_000 }).retention.retentionPolicy(), {
    snapshot: true,
    historySize: 500,
    historyTtlMs: 600_000,
  });
  assert.deepEqual(bars({ snapshot: true }).retention.retentionPolicy(), { snapshot: true, historySize: 0, historyTtlMs: 0 });
  for (const [retention, says] of [
    [{ historySize: 100_001, historyTtlMs: 1000 }, /historySize must be an integer from 0 to 100000, not 100001/],
    [{ historySize: 1.5, historyTtlMs: 1000 }, /historySize must be an integer/],
    [{ historySize: 10, historyTtlMs: 86_400_001 }, /historyTtlMs must be an integer from 0 to 86400000/],
    [{ historySize: 10 }, /a history needs both historySize and historyTtlMs/],
    [{ historyTtlMs: 5000 }, /a history needs both historySize and historyTtlMs/],
    [{ snapshot: "yes" }, /retention.snapshot must be a boolean/],
    [5, /retention must be an object/],
  ]) {
    assert.throws(() => bars(retention), says, JSON.stringify(retention));
  }
});

const accountRequest = Type.Object({ accountId: Type.String(), scope: Type.String({ default: "all" }) });
const A1 = '{"accountId":"A1"}';
const TOKEN = '{"sub":"u1","accounts":["A1","A3"],"exp":1700000000}';
const refusedWith = (message) => (e) => e instanceof Forbidden && e.payload === message && e.message === message;

test("authorize: the default allows everyone", () => {
  const { authorize } = defineRoute({ name: "open", request: accountRequest, data: Type.Object({}) });
  assert.equal(authorize.authorize("null", A1), undefined);
  assert.equal(authorize.authorize('{"sub":"u1"}', A1), undefined);
  assert.equal(authorize.authorize('{"sub":"u1","accounts":[]}', A1), undefined);
});

const perAccount = defineRoute({
  name: "per-account",
  request: accountRequest,
  data: Type.Object({}),
  authorize(claims, request) {
    assert.equal(request.scope, "all", "defaults are applied before the route sees the request");
    if (claims === null) return;
    if (!Array.isArray(claims.accounts) || !claims.accounts.includes(request.accountId)) {
      throw new Forbidden(`account ${JSON.stringify(request.accountId)} is not among this token's accounts`);
    }
  },
});

test("authorize: a route's own refuses with its message (the WIT err value)", () => {
  const { authorize } = perAccount;
  assert.equal(authorize.authorize(TOKEN, A1), undefined);
  assert.throws(() => authorize.authorize(TOKEN, '{"accountId":"A2"}'), refusedWith('account "A2" is not among this token\'s accounts'));
  assert.throws(() => authorize.authorize('{"accounts":"A1"}', A1), Forbidden);
});

test("authorize: null claims reach the route as null", () => {
  assert.equal(perAccount.authorize.authorize("null", '{"accountId":"A2"}'), undefined);
});

test("authorize: unreadable input and the route's own bugs refuse, without details", () => {
  for (const claims of ["", "[1]", '"u1"', "{not json"]) {
    assert.throws(
      () => perAccount.authorize.authorize(claims, A1),
      (e) => e instanceof Forbidden && e.payload.startsWith("route per-account cannot read the token's claims"),
      claims,
    );
  }
  assert.throws(() => perAccount.authorize.authorize("null", "{not json"), (e) => e instanceof Forbidden && e.payload.startsWith("invalid request:"));
  const buggy = defineRoute({
    name: "buggy",
    request: accountRequest,
    data: Type.Object({}),
    authorize() {
      throw new TypeError("secret detail");
    },
  });
  assert.throws(() => buggy.authorize.authorize("null", A1), refusedWith("route buggy failed (TypeError)"));
});

test("a route carries its other exports, for ws-router-build to fill in what a module leaves out", () => {
  const plugin = perAccount.route[Symbol.for("ws-router-sdk.plugin")];
  assert.equal(plugin.authorize, perAccount.authorize);
  assert.equal(plugin.delivery, perAccount.delivery);
  assert.equal(plugin.retention, perAccount.retention);
  assert.deepEqual(Object.keys(perAccount.route), ["info", "requestSchema", "dataSchema", "topics"]);
});
