// Write a ws-router route in JavaScript or TypeScript.
//
// A route is its models (TypeBox schemas: JSON Schema with static types)
// and, only if it needs them, a key function, an `authorize` function
// deciding who may subscribe and a `retention` (snapshot, history). `ws-router-build` bundles the module and
// turns it into a WebAssembly component exporting the interfaces of
// wit/ws-router.wit:
//
//     import { defineRoute, Type } from "ws-router-sdk";
//
//     export const { route, delivery, authorize, retention } = defineRoute({
//       name: "orderbook",
//       request: Type.Object({ symbol: Type.String(), depth: Type.Integer({ default: 10 }) }),
//       data: Type.Object({ time: Type.Integer() }),
//       keys: (request, topic) => [topic], // request: { symbol: string; depth: number }
//     });

import { Kind, Type, type Static, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { defaultTopic } from "./topic.js";

export { Type };
export type { Static, TSchema };
export { canonicalJson, compareCodePoints, defaultTopic, pythonFloat } from "./topic.js";
export type { JsonSchemaLike } from "./topic.js";

const JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema";

/**
 * What the host does when a client cannot keep up with this route's
 * updates: `"queue-all"` disconnects it (close code 4008) so that it never
 * silently misses one; `"latest-value"` replaces its queued update of a
 * topic by the newer one.
 */
export type Delivery = "queue-all" | "latest-value";

/**
 * What the host keeps of this route's updates. `snapshot`: a new
 * subscription is sent each key's last update at once. `historySize` and
 * `historyTtlMs`: each key's latest updates, kept so that a client that
 * reconnects recovers what it missed (by offset); both or neither, at most
 * 100,000 updates and one day. Default: nothing kept.
 */
export interface Retention {
  snapshot?: boolean;
  historySize?: number;
  historyTtlMs?: number;
}

/** The host's bounds on a history (it refuses a plugin beyond them at load). */
export const MAX_HISTORY_SIZE = 100_000;
export const MAX_HISTORY_TTL_MS = 86_400_000;

/**
 * A client's verified token claims (a JSON object), as the host passes
 * them to `authorize`: `sub` (who the token was issued to), `accounts`,
 * `routes`, and whatever else the issuer put in. Their shape is not
 * checked: test a claim before relying on it (`Array.isArray(claims.accounts)`).
 */
export type Claims = Readonly<Record<string, unknown>>;

/** What `defineRoute` takes. */
export interface RouteDefinition<Request extends TSchema, Data extends TSchema> {
  /** The name clients use in frame types: `<name>.subscribe`. */
  name: string;
  /** The plugin's own version (semver); default "0.1.0". */
  version?: string;
  /** One paragraph for humans (AsyncAPI document, docs page). */
  description?: string;
  /** Groups routes in the generated documentation. */
  tags?: readonly string[];
  /** See {@link Delivery}; default "queue-all". */
  delivery?: Delivery;
  /** See {@link Retention}; default: no snapshot, no history. */
  retention?: Retention;
  /**
   * What a client sends to subscribe. A property with a `default` is
   * optional for clients (the published schema does not require it) and
   * always present in the request your functions receive.
   */
  request: Request;
  /** What updates carry. */
  data: Data;
  /**
   * The name of the subscription, sent back to the client. Keep the default
   * (the canonical topic, which browser clients compute themselves) unless
   * no client depends on it.
   */
  topic?: (request: Static<Request>) => string;
  /**
   * The keys publications are routed by, each starting with `<name>:`;
   * `[topic]` by default. Throw `InvalidRequest` to refuse a request.
   */
  keys?: (request: Static<Request>, topic: string) => readonly string[];
  /**
   * Whether a client may subscribe, asked on every subscribe before the
   * topic is built. `claims` are the client's verified token claims,
   * `null` when the host runs without authentication; `request` has its
   * defaults applied. Throw `Forbidden` to refuse: its message is the
   * client's error reply. By default everyone may subscribe, leaving the
   * decision to the host's own checks.
   */
  authorize?: (claims: Claims | null, request: Static<Request>) => void;
}

/** A subscription request resolved (the WIT `subscription` record). */
export interface Subscription {
  topic: string;
  keys: string[];
}

/** The WIT `route` interface, as ComponentizeJS expects it. */
export interface RouteExport {
  info(): { name: string; version: string; description: string; tags: string[] };
  requestSchema(): string;
  dataSchema(): string;
  /** Request JSON text to topic and keys; throws `{ payload: topic-error }`. */
  topics(request: string): Subscription;
}

/** The WIT `delivery` interface. */
export interface DeliveryExport {
  deliveryPolicy(): Delivery;
}

/** The WIT `authorize` interface. */
export interface AuthorizeExport {
  /** Claims and request JSON text; returns to allow, throws `Forbidden` to refuse. */
  authorize(claims: string, request: string): void;
}

/** The WIT `retention` interface (the `retention-settings` record). */
export interface RetentionExport {
  retentionPolicy(): { snapshot: boolean; historySize: number; historyTtlMs: number };
}

/**
 * The plugin's exports, one per WIT interface, to export under these names:
 * `export const { route, delivery, authorize, retention } = defineRoute({...})`.
 * (`ws-router-build` supplies the others from `route` for a module that
 * exports fewer, as routes written before 0.1.3 do.)
 */
export interface RoutePlugin {
  route: RouteExport;
  delivery: DeliveryExport;
  authorize: AuthorizeExport;
  retention: RetentionExport;
}

/**
 * Where `ws-router-build` finds a route's other exports on its `route`: a
 * global symbol, found even when the build and the route reach two copies
 * of this package.
 */
const PLUGIN = Symbol.for("ws-router-sdk.plugin");

/** The client's request cannot be subscribed to; the message reaches the client. */
export class InvalidRequest extends Error {
  /** ComponentizeJS lowers a thrown error's `payload` as the `err` value. */
  readonly payload: { tag: "invalid-request"; val: string };

  constructor(message: string) {
    super(message);
    this.name = "InvalidRequest";
    this.payload = { tag: "invalid-request", val: message };
  }
}

/** A subscription refused by `authorize`; the message reaches the client. */
export class Forbidden extends Error {
  /** ComponentizeJS lowers a thrown error's `payload` as the `err` value. */
  readonly payload: string;

  constructor(message: string) {
    super(message);
    this.name = "Forbidden";
    this.payload = message;
  }
}

/** Define a route; export its result as `export const { route, delivery, authorize, retention } = ...`. */
export function defineRoute<Request extends TSchema, Data extends TSchema>(
  definition: RouteDefinition<Request, Data>,
): RoutePlugin {
  const { name, version = "0.1.0", description = "", tags = [], request, data } = definition;
  const delivery = definition.delivery ?? "queue-all";
  if (delivery !== "queue-all" && delivery !== "latest-value") {
    throw new TypeError(`delivery must be "queue-all" or "latest-value", not ${JSON.stringify(delivery)}`);
  }
  const retention = retentionSettings(definition.retention ?? {});
  for (const [what, schema] of [["request", request], ["data", data]] as const) {
    if (typeof schema !== "object" || schema === null || !(Kind in schema)) {
      throw new TypeError(`${what} must be a TypeBox schema (Type.Object({...})), not ${JSON.stringify(schema)}`);
    }
  }
  const requestSchema = published(request);
  const dataSchema = published(data);
  const topicOf = definition.topic ?? ((req: Static<Request>) => defaultTopic(name, req, requestSchema));
  const keysOf = definition.keys ?? ((_req: Static<Request>, topic: string) => [topic]);
  const allow = definition.authorize;
  const requestText = JSON.stringify(requestSchema);
  const dataText = JSON.stringify(dataSchema);

  const route: RouteExport = {
    info: () => ({ name, version, description, tags: [...tags] }),
    requestSchema: () => requestText,
    dataSchema: () => dataText,
    topics(text) {
      try {
        const req = readRequest(request, JSON.parse(text));
        const topic = topicOf(req);
        return { topic, keys: [...keysOf(req, topic)] };
      } catch (e) {
        if (e instanceof InvalidRequest) throw e;
        if (e instanceof SyntaxError) throw new InvalidRequest(`request is not JSON: ${e.message}`);
        // Name the kind of failure only: the message reaches clients.
        const kind = e instanceof Error ? e.name : "error";
        throw { payload: { tag: "internal", val: `route ${name} failed (${kind})` } };
      }
    },
  };
  const authorize: AuthorizeExport = {
    authorize(claimsText, text) {
      // Anything unreadable refuses: a subscription is never allowed by
      // accident, and a route's own bug refuses without its details.
      let claims: unknown;
      try {
        claims = JSON.parse(claimsText);
      } catch (e) {
        throw new Forbidden(`route ${name} cannot read the token's claims: ${(e as Error).message}`);
      }
      if (claims !== null && (typeof claims !== "object" || Array.isArray(claims))) {
        throw new Forbidden(`route ${name} cannot read the token's claims: not a JSON object`);
      }
      let req: Static<Request>;
      try {
        req = readRequest(request, JSON.parse(text));
      } catch (e) {
        throw new Forbidden(`invalid request: ${(e as Error).message}`);
      }
      if (!allow) return;
      try {
        allow(claims as Claims | null, req);
      } catch (e) {
        if (e instanceof Forbidden) throw e;
        const kind = e instanceof Error ? e.name : "error";
        throw new Forbidden(`route ${name} failed (${kind})`);
      }
    },
  };
  const plugin: RoutePlugin = {
    route,
    delivery: { deliveryPolicy: () => delivery },
    authorize,
    retention: { retentionPolicy: () => ({ ...retention }) },
  };
  Object.defineProperty(route, PLUGIN, { value: plugin });
  return plugin;
}

/** A route's `retention`, checked (the build fails, not the load), with defaults. */
function retentionSettings(given: Retention): ReturnType<RetentionExport["retentionPolicy"]> {
  if (typeof given !== "object" || given === null) {
    throw new TypeError(`retention must be an object ({ snapshot, historySize, historyTtlMs }), not ${JSON.stringify(given)}`);
  }
  const { snapshot = false, historySize = 0, historyTtlMs = 0 } = given;
  if (typeof snapshot !== "boolean") throw new TypeError(`retention.snapshot must be a boolean, not ${JSON.stringify(snapshot)}`);
  const bounded = (what: string, n: unknown, max: number) => {
    if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > max) {
      throw new RangeError(`retention.${what} must be an integer from 0 to ${max}, not ${JSON.stringify(n)}`);
    }
  };
  bounded("historySize", historySize, MAX_HISTORY_SIZE);
  bounded("historyTtlMs", historyTtlMs, MAX_HISTORY_TTL_MS);
  if ((historySize === 0) !== (historyTtlMs === 0)) {
    throw new RangeError(
      `retention: a history needs both historySize and historyTtlMs (or neither), not historySize ${historySize} and historyTtlMs ${historyTtlMs}`,
    );
  }
  return { snapshot, historySize, historyTtlMs };
}

/**
 * A parsed request (already valid against `schema`, which the host checks)
 * as the route's functions see it: unknown properties dropped, defaults
 * applied. Numbers stay numbers.
 */
export function readRequest<T extends TSchema>(schema: T, value: unknown): Static<T> {
  return Value.Default(schema, Value.Clean(schema, value)) as Static<T>;
}

/**
 * The JSON Schema the host is given: the TypeBox schema as JSON, with
 * `$schema`, and properties that have a `default` not required (the
 * client may leave them out; the default is applied before the topic).
 */
function published(schema: TSchema): Record<string, unknown> {
  const plain = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
  return { $schema: JSON_SCHEMA, ...(relaxDefaults(plain) as Record<string, unknown>) };
}

function relaxDefaults(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(relaxDefaults);
  if (node === null || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    // `default` and `examples` are data, not schemas: leave them as they are.
    out[key] = key === "default" || key === "examples" || key === "const" || key === "enum" ? value : relaxDefaults(value);
  }
  const props = out["properties"];
  if (Array.isArray(out["required"]) && props && typeof props === "object") {
    const hasDefault = (k: string) => {
      const prop = (props as Record<string, unknown>)[k];
      return prop !== null && typeof prop === "object" && "default" in prop;
    };
    const required = (out["required"] as string[]).filter((k) => !hasDefault(k));
    if (required.length > 0) out["required"] = required;
    else delete out["required"];
  }
  return out;
}
