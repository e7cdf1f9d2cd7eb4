// The JavaScript topic builder against the shared vectors
// (tests/topic-vectors.json), and defineRoute on TypeBox models.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { canonicalJson, compareCodePoints, defaultTopic, defineRoute, InvalidRequest, Type } from "ws-router-sdk";

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
