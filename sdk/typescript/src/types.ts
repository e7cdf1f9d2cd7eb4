import type { WsRouterError } from "./errors.js";

/**
 * The part of the WebSocket API the client uses. The browser's `WebSocket`,
 * Node 22's global one and the `ws` package's `WebSocket` all fit.
 *
 * Handlers take `never` so that any implementation's own event types are
 * accepted; the client reads only `data`, `code` and `reason`.
 */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: never) => unknown) | null;
  onmessage: ((event: never) => unknown) | null;
  onclose: ((event: never) => unknown) | null;
  onerror: ((event: never) => unknown) | null;
}

/** A WebSocket constructor: `WebSocket` in browsers, `(await import("ws")).WebSocket` in Node 20. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `connecting` (first attempt), `open`, `reconnecting` (lost; waiting or retrying), `closed` (before the first connect and after `close()`). */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ReconnectOptions {
  /** First retry delay (ms). Default 250. */
  initialDelayMs?: number;
  /** Longest retry delay (ms). Default 10,000. */
  maxDelayMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
  /** Fraction of each delay that is random (0 to 1), so that clients dropped together do not return together. Default 0.5. */
  jitter?: number;
}

export interface ClientOptions {
  /** `ws://host:port/api/v1/ws`, or a module's `/api/v1/<tag>/ws`. */
  url: string;
  /** The WebSocket implementation; default `globalThis.WebSocket`. Node 20 has none: pass the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  /** How long a subscribe or unsubscribe waits for the host's reply (ms), connecting included. Default 10,000. */
  requestTimeoutMs?: number;
  /** How long an attempt may take to open (ms) before it is dropped and retried. Default 10,000. */
  connectTimeoutMs?: number;
  /**
   * Drop and reconnect a connection that received nothing for this long (ms);
   * 0 (default) turns it off. The host pings every 20 s, which counts where
   * the WebSocket implementation shows pings (the `ws` package); browsers do
   * not, so in a browser choose a value above the longest quiet period of
   * your subscriptions.
   */
  idleTimeoutMs?: number;
  /**
   * Most commands sent per second (bursts of as many); more wait their turn.
   * Keep it under the host's `--commands-per-sec` (default 100), which
   * refuses the excess and closes connections that keep exceeding it.
   * Default 50.
   */
  commandsPerSecond?: number;
  /** Backoff between reconnect attempts, or `false` to end every subscription when the connection drops. */
  reconnect?: ReconnectOptions | false;
}

/** What an update frame said besides the data. */
export interface UpdateInfo {
  route: string;
  /** The subscription's topic (what `subscribe` resolved with). */
  topic: string;
  /** The routing key it was published to: `key` when the host names one, else the topic. */
  key: string;
  /** Position in the key's history, when the route keeps one (offsets of one epoch increase by one per update). */
  offset?: number;
  /** Changes whenever the host lost the key's history; offsets of different epochs do not compare. */
  epoch?: string;
}

/** Told to a listener when its subscription was renewed after a reconnect. */
export interface ResubscribeInfo {
  topic: string;
  /**
   * `true`: the host replayed every update missed since the last one seen;
   * `false`: it could not (refetch what you show); `undefined`: the host does
   * not offer recovery or the client had no position to recover from.
   */
  recovered: boolean | undefined;
  /**
   * The subscription's keys whose missed updates the host could not replay
   * (empty when all were, or when the host does not say): refetch the state
   * behind these.
   */
  unrecoveredKeys: readonly string[];
}

export interface ListenerOptions {
  /** The subscription ended without `unsubscribe`: route removed, resubscribe refused, connection lost with reconnecting off. */
  onError?: (error: WsRouterError) => void;
  /** The subscription was renewed after a reconnect. */
  onResubscribed?: (info: ResubscribeInfo) => void;
}

/** A route in a `routes.changed` frame. */
export interface RouteVersion {
  name: string;
  version: string;
}

export interface ClientEvents {
  state: ConnectionState;
  /** The host's route set changed (a plugin was added, upgraded or removed). */
  routesChanged: readonly RouteVersion[];
  /** A host `error` frame that answers none of this client's commands. */
  hostError: string;
}
