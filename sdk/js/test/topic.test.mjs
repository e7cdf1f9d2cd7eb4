// The JavaScript topic builder against the shared vectors
// (tests/topic-vectors.json), and the model helpers.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  canonicalJson,
  compareCodePoints,
  defaultTopic,
  defineRoute,
  deliveryOf,
  float,
  InvalidRequest,
  parseJson,
  t,
} from "../ws-router.js";

const vectors = JSON.parse(
  readFileSync(new URL("../../../tests/topic-vectors.json", import.meta.url), "utf8"),
).vectors;

test("shared topic vectors, byte for byte", () => {
  assert.ok(vectors.length > 10);
  for (const v of vectors) {
    const got = defaultTopic(v.route, parseJson(v.request));
    assert.deepEqual(Buffer.from(got, "utf8"), Buffer.from(v.topic, "utf8"), v.note);
  }
});

test("parseJson keeps number kinds and agrees with JSON.parse otherwise", () => {
  const v = parseJson('{"a": 1, "b": 1.0, "c": 9007199254740993, "__proto__": {"x": [true, null]}}');
  assert.equal(v.a, 1);
  assert.equal(+v.b, 1);
  assert.equal(canonicalJson(v.b), "1.0");
  assert.equal(v.c, 9007199254740993n);
  assert.deepEqual(Object.keys(v), ["a", "b", "c", "__proto__"]);
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  for (const bad of ["", "{", "[1,]", "01", "1.", '"x', "nul", "1 2"]) {
    assert.throws(() => parseJson(bad), SyntaxError, bad);
  }
});

test("plain JS values: integer-valued numbers are integers unless marked float", () => {
  assert.equal(canonicalJson({ b: 2.5, a: 1, c: float(3) }), '{"a":1,"b":2.5,"c":3.0}');
  assert.equal(canonicalJson(-0), "0");
  assert.throws(() => canonicalJson(NaN), TypeError);
  assert.ok(compareCodePoints("\uffff", "😀") < 0);
  assert.ok(compareCodePoints("a", "ab") < 0);
});

const route = defineRoute({
  name: "book",
  request: t.object({
    symbol: t.string(),
    depth: t.integer({ default: 10 }),
    tick: t.number({ default: 1 }),
    venue: t.optional(t.string()),
    levels: t.array(t.object({ price: t.number() }), { default: [] }),
  }),
  data: t.object({ time: t.integer() }),
  keys(request, topic) {
    if (request.symbol === "BAD") throw new InvalidRequest("no BAD");
    if (request.symbol === "BUG") throw new Error("secret detail");
    return [topic];
  },
});

test("schemas: required, defaults, $schema", () => {
  const schema = JSON.parse(route.requestSchema());
  assert.deepEqual(schema.required, ["symbol"]);
  assert.equal(schema.properties.depth.default, 10);
  assert.match(schema.$schema, /2020-12/);
  assert.deepEqual(route.info(), { name: "book", version: "0.1.0", description: "", tags: [] });
});

test("topics: defaults applied, unknown fields dropped, numbers made floats", () => {
  assert.deepEqual(route.topics('{"symbol":"AAPL","extra":1,"levels":[{"price":2}]}'), {
    topic: 'book:{"depth":10,"levels":[{"price":2.0}],"symbol":"AAPL","tick":1.0}',
    keys: ['book:{"depth":10,"levels":[{"price":2.0}],"symbol":"AAPL","tick":1.0}'],
  });
  assert.throws(() => route.topics('{"symbol":"BAD"}'), (e) => e.payload.tag === "invalid-request" && e.payload.val === "no BAD");
  assert.throws(() => route.topics('{"symbol":"BUG"}'), (e) => e.payload.tag === "internal" && !e.payload.val.includes("secret"));
});

test("delivery policy: queue-all by default, latest-value on request, nothing else", () => {
  assert.equal(deliveryOf(route).deliveryPolicy(), "queue-all");
  const latest = defineRoute({ name: "q", delivery: "latest-value", request: t.object({}), data: t.object({}) });
  assert.equal(deliveryOf(latest).deliveryPolicy(), "latest-value");
  assert.throws(
    () => defineRoute({ name: "q", delivery: "latest", request: t.object({}), data: t.object({}) }),
    /delivery must be "queue-all" or "latest-value"/,
  );
});
