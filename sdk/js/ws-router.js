// Write a ws-router route in JavaScript.
//
// A route is its models (JSON Schema written with the `t` helpers) and, only
// if it needs one, a key function. ComponentizeJS turns the module into a
// WebAssembly component exporting `ws-router:plugin/route`
// (wit/ws-router.wit):
//
//     import { defineRoute, t } from "../../sdk/js/ws-router.js";
//     export const route = defineRoute({
//       name: "orderbook",
//       request: t.object({ symbol: t.string(), depth: t.integer({ default: 10 }) }),
//       data: t.object({ time: t.integer() }),
//     });
//
// No dependencies: it runs in Node (tests) and in the component (StarlingMonkey).

const JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema";

// ---------------------------------------------------------------------------
// Numbers that know they are floats.
//
// The canonical topic prints `1.0` for a JSON float and `1` for an integer,
// as Python and Rust do; a JavaScript number cannot tell them apart. Requests
// are therefore parsed with `parseJson`, which returns floats as `Float`
// objects (a Number subclass: arithmetic works, `+x` gives the primitive),
// integers as numbers, and 64-bit integers beyond 2^53 as BigInt.

/** A JSON number that was written as a float (`1.0`, `1e3`). */
export class Float extends Number {
  toJSON() {
    return this.valueOf();
  }
}

/** Mark a number as a float for the canonical topic: `float(1)` prints `1.0`. */
export const float = (n) => new Float(Number(n));

const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

/** Parse JSON text, keeping what kind of number each number was. */
export function parseJson(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`invalid JSON at offset ${i}: ${what}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = {};
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const key = string();
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        // defineProperty: a "__proto__" key is data, not a prototype.
        Object.defineProperty(obj, key, {
          value: value(),
          writable: true,
          enumerable: true,
          configurable: true,
        });
        ws();
        const next = text[i++];
        if (next === "}") return obj;
        if (next !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        const next = text[i++];
        if (next === "]") return arr;
        if (next !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail("expected a value");
    i += m[0].length;
    if (m[1] !== undefined || m[2] !== undefined) return new Float(Number(m[0]));
    const n = Number(m[0]);
    if (Number.isSafeInteger(n)) return n;
    const big = BigInt(m[0]);
    // Like the Rust host's parser: integers beyond 64 bits are floats.
    return big >= I64_MIN && big <= U64_MAX ? big : new Float(n);
  };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const result = value();
  ws();
  if (i !== text.length) fail("trailing characters");
  return result;
}

// ---------------------------------------------------------------------------
// The canonical topic: `<route>:<canonical JSON of the request>`, byte-
// identical to the Rust and Python SDKs (tests/topic-vectors.json): keys
// sorted recursively by code point, no whitespace, null as "", UTF-8 kept,
// integers as integers, floats as Python's repr (1.0, 1e-05, 1e+16).

/** `<route>:<canonical JSON of request>`. */
export function defaultTopic(route, request) {
  return `${route}:${canonicalJson(request)}`;
}

/** The canonical JSON text of a value from `parseJson` (or plain JS). */
export function canonicalJson(value) {
  if (value === null || value === undefined) return '""';
  if (value instanceof Float) return pythonFloat(value.valueOf());
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      // Escapes exactly `"`, `\` and control characters, like serde_json
      // and Python's json.dumps(ensure_ascii=False).
      return JSON.stringify(value);
    case "bigint":
      return value >= I64_MIN && value <= U64_MAX
        ? value.toString()
        : pythonFloat(Number(value));
    case "number":
      if (!Number.isInteger(value)) return pythonFloat(value);
      if (Number.isSafeInteger(value)) return String(value === 0 ? 0 : value);
      return canonicalJson(BigInt(value));
    case "object": {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      if (value instanceof Number) return canonicalJson(value.valueOf());
      if (value instanceof String || value instanceof Boolean) {
        return canonicalJson(value.valueOf());
      }
      const keys = Object.keys(value).sort(compareCodePoints);
      const parts = keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`);
      return `{${parts.join(",")}}`;
    }
    default:
      throw new TypeError(`not a JSON value: ${typeof value}`);
  }
}

/** Compare strings by Unicode code point (Python's and Rust's order). */
export function compareCodePoints(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // UTF-16 order differs from code point order only between a surrogate
      // (part of a code point above U+FFFF) and U+E000..U+FFFF.
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** Python's `repr(float)`. */
export function pythonFloat(x) {
  if (!Number.isFinite(x)) throw new TypeError(`not a JSON number: ${x}`);
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  // toExponential() without digits gives the shortest round-trip digits.
  let s = x.toExponential();
  const negative = s.startsWith("-");
  if (negative) s = s.slice(1);
  const [mantissa, expText] = s.split("e");
  const exp = Number(expText);
  const digits = mantissa.replace(".", "");
  let out;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const intLen = exp + 1;
      out =
        digits.length <= intLen
          ? `${digits}${"0".repeat(intLen - digits.length)}.0`
          : `${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
    } else {
      out = `0.${"0".repeat(-exp - 1)}${digits}`;
    }
  } else {
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : "";
    const sign = exp < 0 ? "-" : "+";
    out = `${digits[0]}${frac}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return negative ? `-${out}` : out;
}

// ---------------------------------------------------------------------------
// Models: JSON Schema, written with small helpers. A property with a
// `default` is optional (the default is applied before the topic is built);
// wrap others in `t.optional(...)` to make them optional without one.

const OPTIONAL = Symbol("optional");

export const t = {
  string: (opts = {}) => ({ type: "string", ...opts }),
  integer: (opts = {}) => ({ type: "integer", ...opts }),
  /** A float: integers sent for it become floats (`1` -> `1.0`), as in Rust and Python. */
  number: (opts = {}) => ({ type: "number", ...opts }),
  boolean: (opts = {}) => ({ type: "boolean", ...opts }),
  enum: (values, opts = {}) => ({ enum: values, ...opts }),
  array: (items, opts = {}) => ({ type: "array", items, ...opts }),
  nullable: (schema) => ({ anyOf: [schema, { type: "null" }] }),
  optional: (schema) => Object.defineProperty({ ...schema }, OPTIONAL, { value: true }),
  object: (properties, opts = {}) => {
    const required = Object.keys(properties).filter(
      (k) => !("default" in properties[k]) && !properties[k][OPTIONAL],
    );
    return {
      type: "object",
      ...opts,
      properties,
      ...(required.length > 0 ? { required } : {}),
    };
  },
};

/**
 * Read a parsed request (already valid against `schema`) into the model:
 * defaults applied, unknown properties dropped, numbers for `number`
 * properties made floats.
 */
export function readRequest(schema, value) {
  if (value === undefined || value === null || typeof schema !== "object") return value;
  if (schema.type === "number" && isNumeric(value)) return float(value);
  if (schema.anyOf && isNumeric(value) && schema.anyOf.some((s) => s.type === "number")) {
    return schema.anyOf.some((s) => s.type === "integer") ? value : float(value);
  }
  if (schema.type === "array" && schema.items && Array.isArray(value)) {
    return value.map((v) => readRequest(schema.items, v));
  }
  if (schema.properties && typeof value === "object" && !Array.isArray(value)) {
    const out = {};
    for (const [key, prop] of Object.entries(schema.properties)) {
      if (Object.hasOwn(value, key)) out[key] = readRequest(prop, value[key]);
      else if ("default" in prop) out[key] = readRequest(prop, structuredCopy(prop.default));
    }
    return out;
  }
  return value;
}

const isNumeric = (v) => typeof v === "number" || typeof v === "bigint" || v instanceof Number;

const structuredCopy = (v) =>
  v === null || typeof v !== "object" || v instanceof Number ? v : JSON.parse(JSON.stringify(v));

// ---------------------------------------------------------------------------
// The route and its export.

/** The client's request cannot be subscribed to; the message reaches the client. */
export class InvalidRequest extends Error {
  constructor(message) {
    super(message);
    // ComponentizeJS lowers a thrown error's `payload` as the `err` value.
    this.payload = { tag: "invalid-request", val: message };
  }
}

/**
 * The object to export as `route` (`export const route = defineRoute({...})`).
 *
 * - `name`: what clients use in frame types (`<name>.subscribe`);
 * - `version`, `description`, `tags`: shown by the host;
 * - `request`, `data`: JSON Schemas (use `t`);
 * - `topic(request)`: optional; the canonical topic by default (browser
 *   clients compute it themselves: keep it);
 * - `keys(request, topic)`: optional; `[topic]` by default. Each key starts
 *   with `<name>:`.
 */
export function defineRoute(spec) {
  const { name, version = "0.1.0", description = "", tags = [], request, data } = spec;
  const delivery = spec.delivery ?? "queue-all";
  if (delivery !== "queue-all" && delivery !== "latest-value") {
    throw new TypeError(`delivery must be "queue-all" or "latest-value", not ${JSON.stringify(delivery)}`);
  }
  const topicOf = spec.topic ?? ((req) => defaultTopic(name, req));
  const keysOf = spec.keys ?? ((_req, topic) => [topic]);
  const requestSchema = JSON.stringify({ $schema: JSON_SCHEMA, ...request });
  const dataSchema = JSON.stringify({ $schema: JSON_SCHEMA, ...data });
  return {
    info: () => ({ name, version, description, tags: [...tags] }),
    requestSchema: () => requestSchema,
    dataSchema: () => dataSchema,
    deliveryPolicy: () => delivery,
    topics(text) {
      try {
        const req = readRequest(request, parseJson(text));
        const topic = topicOf(req);
        return { topic, keys: [...keysOf(req, topic)] };
      } catch (e) {
        if (e instanceof InvalidRequest) throw e;
        if (e instanceof SyntaxError) throw new InvalidRequest(e.message);
        // Name the kind of failure only: the message reaches clients.
        throw { payload: { tag: "internal", val: `route ${name} failed (${e?.name ?? "error"})` } };
      }
    },
  };
}

/**
 * The `ws-router:plugin/delivery` export of a route made by `defineRoute`:
 * what the host does when a client cannot keep up ("queue-all": disconnect
 * it with close code 4008; "latest-value": replace its queued update of a
 * topic by the newer one). Export it beside the route:
 *
 *     export const delivery = deliveryOf(route);
 */
export function deliveryOf(route) {
  return { deliveryPolicy: () => route.deliveryPolicy() };
}
