import { WsRouterError, type Problem } from "./errors.js";
import type {
  ClientEvents,
  ClientOptions,
  ConnectionState,
  ListenerOptions,
  ReconnectOptions,
  RouteVersion,
  UpdateInfo,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";

type Op = "subscribe" | "unsubscribe";

interface Position {
  offset: number;
  epoch: string;
  /**
   * Whether the update at `offset` reached the listeners. A position taken
   * from a subscribe reply has not: the snapshot that may follow carries
   * that offset, and is delivered once.
   */
  delivered: boolean;
}

interface Listener {
  route: string;
  id: string;
  onUpdate: (data: unknown, info: UpdateInfo) => void;
  options: ListenerOptions;
  sub: Sub;
  /** Set until the host confirms the subscription this listener waits for. */
  waiter: Waiter | undefined;
}

interface Waiter {
  resolve: (topic: string) => void;
  reject: (error: WsRouterError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * One subscription on the host, shared by every listener whose request
 * resolves to its topic. `idle`: to be sent once the socket is open;
 * `sending`: a subscribe is in flight; `active`: confirmed on this connection.
 */
interface Sub {
  route: string;
  request: unknown;
  requestKey: string;
  topic: string | undefined;
  state: "idle" | "sending" | "active";
  listeners: Map<string, Listener>;
  /** Last position seen per key, sent as `recover` when resubscribing. */
  positions: Map<string, Position>;
  /** The next confirmation is a renewal after a reconnect. */
  renewing: boolean;
}

interface Command {
  id: number;
  route: string;
  op: Op;
  request: unknown;
  /** The subscription a subscribe is for. */
  sub: Sub | undefined;
}

interface UnsubscribeWaiter {
  resolve: () => void;
  reject: (error: WsRouterError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const DEFAULT_RECONNECT: Required<ReconnectOptions> = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
};

/**
 * One WebSocket to a ws-router host, shared by every route.
 *
 * Listeners are named by the caller (`subscribe(route, "chart-1", ...)`);
 * listeners whose requests resolve to one topic share one subscription on
 * the host, which ends when the last of them leaves. Replies are matched to
 * their command by the frame's `id` (the host echoes it), or, from a host
 * that does not echo ids, by order: the host answers one connection's
 * commands in the order it received them.
 */
export class WsRouterClient {
  readonly url: string;
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly backoff: Required<ReconnectOptions> | undefined;

  private socket: WebSocketLike | undefined;
  private socketOpen = false;
  private currentState: ConnectionState = "closed";
  private closedByUser = false;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly commandsPerSecond: number;
  private tokens: number;
  private tokensAt = 0;
  /** Frames waiting for the command rate. */
  private outbox: string[] = [];

  private nextId = 1;
  /** Commands sent on the current socket and not answered yet, oldest first. */
  private readonly pending = new Map<number, Command>();
  private readonly inflightPerRoute = new Map<string, number>();

  private readonly listeners = new Map<string, Listener>();
  private readonly subsByRequest = new Map<string, Sub>();
  private readonly subsByTopic = new Map<string, Sub>();
  /** What the host holds on this connection, as its replies so far say: topic key -> a request for it. */
  private readonly hostTopics = new Map<string, { route: string; topic: string; request: unknown }>();
  private readonly unsubscribeWaiters = new Map<string, UnsubscribeWaiter[]>();
  private readonly openWaiters = new Set<{ resolve: () => void; reject: (e: WsRouterError) => void }>();
  private readonly handlers: { [K in keyof ClientEvents]: Set<(value: ClientEvents[K]) => void> } = {
    state: new Set(),
    routesChanged: new Set(),
    hostError: new Set(),
  };

  constructor(options: ClientOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new TypeError(`url must be an absolute ws:// or wss:// URL, got ${JSON.stringify(options.url)}`);
    }
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new TypeError(`url must be a ws:// or wss:// URL, got ${JSON.stringify(options.url)}`);
    }
    this.url = options.url;
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!impl) {
      throw new TypeError("no WebSocket implementation: pass one as `WebSocket` (in Node 20: the `ws` package's WebSocket)");
    }
    this.WebSocketImpl = impl;
    this.requestTimeoutMs = positive(options.requestTimeoutMs, 10_000, "requestTimeoutMs");
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 10_000, "connectTimeoutMs");
    this.idleTimeoutMs = options.idleTimeoutMs === undefined ? 0 : positive(options.idleTimeoutMs, 0, "idleTimeoutMs", true);
    this.commandsPerSecond = positive(options.commandsPerSecond, 50, "commandsPerSecond");
    this.tokens = this.commandsPerSecond;
    if (options.reconnect === false) {
      this.backoff = undefined;
    } else {
      const r = { ...DEFAULT_RECONNECT, ...options.reconnect };
      positive(r.initialDelayMs, 0, "reconnect.initialDelayMs");
      positive(r.maxDelayMs, 0, "reconnect.maxDelayMs");
      if (!(r.factor >= 1)) throw new RangeError(`reconnect.factor must be at least 1, got ${r.factor}`);
      if (!(r.jitter >= 0 && r.jitter <= 1)) throw new RangeError(`reconnect.jitter must be between 0 and 1, got ${r.jitter}`);
      this.backoff = r;
    }
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** Listen to a client event; returns a function that stops listening. */
  on<K extends keyof ClientEvents>(event: K, handler: (value: ClientEvents[K]) => void): () => void {
    const set = this.handlers[event] as Set<(value: ClientEvents[K]) => void>;
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Open the connection now (it opens on the first subscribe otherwise); resolves once it is open. */
  connect(): Promise<void> {
    if (this.closedByUser) return Promise.reject(new WsRouterError("closed", "the client is closed"));
    if (this.socketOpen) return Promise.resolve();
    this.ensureConnecting();
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          this.openWaiters.delete(waiter);
          resolve();
        },
        reject: (e: WsRouterError) => {
          clearTimeout(timer);
          this.openWaiters.delete(waiter);
          reject(e);
        },
      };
      const timer = setTimeout(
        () => waiter.reject(new WsRouterError("timeout", `could not connect to ${this.url} within ${this.requestTimeoutMs} ms`)),
        this.requestTimeoutMs,
      );
      this.openWaiters.add(waiter);
    });
  }

  /**
   * Subscribe listener `listenerId` of `route` to `request`. Resolves with the
   * topic once the host confirms; rejects with a {@link WsRouterError} (the
   * host's `message` and `errors` when it refused). A listener id already in
   * use on this route is unsubscribed first: subscribing again replaces.
   */
  subscribe(
    route: string,
    listenerId: string,
    request: unknown,
    onUpdate: (data: unknown, info: UpdateInfo) => void,
    options: ListenerOptions = {},
  ): Promise<string> {
    if (this.closedByUser) return Promise.reject(new WsRouterError("closed", "the client is closed", { route }));
    const listenerKey = join(route, listenerId);
    if (this.listeners.has(listenerKey)) void this.unsubscribe(route, listenerId).catch(() => {});
    const requestKey = join(route, stableJson(request));
    let sub = this.subsByRequest.get(requestKey);
    const isNew = !sub;
    if (!sub) {
      sub = {
        route,
        request,
        requestKey,
        topic: undefined,
        state: "idle",
        listeners: new Map(),
        positions: new Map(),
        renewing: false,
      };
      this.subsByRequest.set(requestKey, sub);
    }
    const listener: Listener = { route, id: listenerId, onUpdate, options, sub, waiter: undefined };
    sub.listeners.set(listenerId, listener);
    this.listeners.set(listenerKey, listener);
    if (sub.state === "active" && sub.topic !== undefined) {
      this.settleUnsubscribeWaiters(join(route, sub.topic));
      return Promise.resolve(sub.topic);
    }
    const promise = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        listener.waiter = undefined;
        this.detach(listener);
        reject(new WsRouterError("timeout", `${route}.subscribe: no reply within ${this.requestTimeoutMs} ms`, { route }));
      }, this.requestTimeoutMs);
      listener.waiter = { resolve, reject, timer };
    });
    if (isNew || sub.state === "idle") {
      if (this.socketOpen) this.sendSubscribe(sub);
      else this.ensureConnecting();
    }
    return promise;
  }

  /**
   * Remove listener `listenerId` of `route`. When it was the last listener of
   * its subscription, resolves once the host confirms the unsubscribe (at once
   * when disconnected: the host dropped it already). Unknown ids resolve.
   */
  unsubscribe(route: string, listenerId: string): Promise<void> {
    const listener = this.listeners.get(join(route, listenerId));
    if (!listener) return Promise.resolve();
    const sub = listener.sub;
    this.detach(listener);
    if (listener.waiter) {
      clearTimeout(listener.waiter.timer);
      listener.waiter.reject(new WsRouterError("cancelled", `${route}.subscribe was cancelled by unsubscribe`, { route }));
      listener.waiter = undefined;
    }
    if (sub.listeners.size > 0 || sub.topic === undefined || !this.socketOpen) return Promise.resolve();
    const topicKey = join(route, sub.topic);
    if (!this.hostTopics.has(topicKey) && this.subsByTopic.get(topicKey) !== sub && sub.state !== "sending") {
      return Promise.resolve();
    }
    const promise = new Promise<void>((resolve, reject) => {
      const waiter: UnsubscribeWaiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.removeUnsubscribeWaiter(topicKey, waiter);
          reject(new WsRouterError("timeout", `${route}.unsubscribe: no reply within ${this.requestTimeoutMs} ms`, { route }));
        }, this.requestTimeoutMs),
      };
      const list = this.unsubscribeWaiters.get(topicKey) ?? [];
      list.push(waiter);
      this.unsubscribeWaiters.set(topicKey, list);
    });
    this.reconcile(route);
    return promise;
  }

  /** Close the connection and end every subscription. Nothing keeps running afterwards. */
  close(): void {
    if (this.closedByUser) return;
    this.closedByUser = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const socket = this.socket;
    this.dropSocket();
    if (socket) {
      try {
        socket.close(1000, "client closed");
      } catch {
        // Closing a socket that is still connecting throws in some implementations; it is dropped either way.
      }
    }
    const closed = (what: string) => new WsRouterError("closed", `${what}: the client was closed`);
    for (const listener of [...this.listeners.values()]) {
      this.detach(listener);
      if (listener.waiter) {
        clearTimeout(listener.waiter.timer);
        listener.waiter.reject(closed(`${listener.route}.subscribe`));
      }
    }
    for (const waiter of [...this.openWaiters]) waiter.reject(closed("connect"));
    this.settleAllUnsubscribeWaiters();
    this.setState("closed");
  }

  // ---- connection ----

  private ensureConnecting(): void {
    if (this.closedByUser || this.socket || this.retryTimer) return;
    this.open();
  }

  private open(): void {
    this.retryTimer = undefined;
    this.setState(this.currentState === "reconnecting" ? "reconnecting" : "connecting");
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(this.url);
    } catch {
      // Refused before any network activity (a page's content security policy, say): retry like a failed attempt.
      this.retryLater();
      return;
    }
    this.socket = socket;
    this.connectTimer = setTimeout(() => this.lost(socket), this.connectTimeoutMs);
    socket.onopen = (() => this.opened(socket)) as never;
    socket.onmessage = ((event: { data: unknown }) => this.received(socket, event.data)) as never;
    socket.onclose = (() => this.lost(socket)) as never;
    // An error is always followed by close, which is where it is handled.
    socket.onerror = ignore as never;
    const emitter = socket as unknown as { on?: (event: string, cb: () => void) => void };
    if (this.idleTimeoutMs > 0 && typeof emitter.on === "function") emitter.on("ping", () => this.touch(socket));
  }

  private opened(socket: WebSocketLike): void {
    if (socket !== this.socket) return;
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.socketOpen = true;
    this.touch(socket);
    this.setState("open");
    for (const waiter of [...this.openWaiters]) waiter.resolve();
    // Renew every wanted subscription, each on its own: one refusal does not stop the others.
    const wanted = new Set<Sub>();
    for (const listener of this.listeners.values()) wanted.add(listener.sub);
    for (const sub of wanted) this.sendSubscribe(sub);
  }

  /** The socket closed, failed to open in time, or went quiet: forget it and retry after a backoff. */
  private lost(socket: WebSocketLike): void {
    if (socket !== this.socket) return;
    this.dropSocket();
    const ws = socket as unknown as { terminate?: () => void };
    try {
      // A dead peer never completes a closing handshake: `ws` can drop the socket at once.
      if (typeof ws.terminate === "function") ws.terminate();
      else socket.close(4000, "connection lost");
    } catch {
      // Already closed: nothing to release.
    }
    if (this.closedByUser) return;
    this.retryLater();
  }

  /** Exponential backoff with jitter; the attempt count resets when the host sends a frame. */
  private retryLater(): void {
    if (this.backoff) {
      const { initialDelayMs, maxDelayMs, factor, jitter } = this.backoff;
      const base = Math.min(maxDelayMs, initialDelayMs * factor ** Math.min(this.attempt, 30));
      this.attempt += 1;
      this.setState("reconnecting");
      this.retryTimer = setTimeout(() => this.open(), base * (1 - jitter * Math.random()));
      return;
    }
    // Reconnecting is off: every subscription ends here.
    for (const listener of [...this.listeners.values()]) {
      this.detach(listener);
      const error = new WsRouterError("disconnected", `the connection to ${this.url} was lost`, { route: listener.route });
      if (listener.waiter) {
        clearTimeout(listener.waiter.timer);
        listener.waiter.reject(error);
      } else {
        safely(() => listener.options.onError?.(error));
      }
    }
    for (const waiter of [...this.openWaiters]) waiter.reject(new WsRouterError("disconnected", `could not connect to ${this.url}`));
    this.setState("closed");
  }

  /** Detach from the current socket and reset everything that lived on it. */
  private dropSocket(): void {
    const socket = this.socket;
    if (socket) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      // Kept: `ws` throws an "error" event that has no listener.
      socket.onerror = ignore as never;
    }
    this.socket = undefined;
    this.socketOpen = false;
    clearTimeout(this.connectTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.flushTimer);
    this.connectTimer = undefined;
    this.idleTimer = undefined;
    this.flushTimer = undefined;
    this.outbox = [];
    this.tokens = this.commandsPerSecond;
    // The host forgets a connection's subscriptions when it closes.
    for (const command of this.pending.values()) {
      if (command.sub && command.sub.state === "sending") command.sub.state = "idle";
    }
    this.pending.clear();
    this.inflightPerRoute.clear();
    this.hostTopics.clear();
    for (const sub of new Set([...this.subsByTopic.values(), ...this.subsByRequest.values()])) {
      if (sub.listeners.size === 0) this.forget(sub);
      else {
        if (sub.state !== "idle") sub.renewing = true;
        sub.state = "idle";
      }
    }
    this.settleAllUnsubscribeWaiters();
  }

  private touch(socket: WebSocketLike): void {
    if (this.idleTimeoutMs <= 0 || socket !== this.socket) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.lost(socket), this.idleTimeoutMs);
  }

  private setState(state: ConnectionState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const handler of [...this.handlers[event]]) safely(() => (handler as (v: ClientEvents[K]) => void)(value));
  }

  // ---- commands ----

  private send(route: string, op: Op, request: unknown, sub: Sub | undefined, extra: Record<string, unknown> = {}): void {
    if (!this.socket || !this.socketOpen) return;
    const id = this.nextId++;
    // Registered now, sent in this order: replies are matched against it, and reconcile waits for it.
    this.pending.set(id, { id, route, op, request, sub });
    this.inflightPerRoute.set(route, (this.inflightPerRoute.get(route) ?? 0) + 1);
    this.outbox.push(JSON.stringify({ type: `${route}.${op}`, id, payload: request, ...extra }));
    this.flush();
  }

  /**
   * Send queued frames, at most `commandsPerSecond` (bursts of as many): the
   * host refuses commands over its rate limit and closes connections that keep
   * exceeding it, which renewing many subscriptions at once would.
   */
  private flush(): void {
    const socket = this.socket;
    if (!socket || !this.socketOpen) return;
    const now = Date.now();
    this.tokens = Math.min(this.commandsPerSecond, this.tokens + ((now - this.tokensAt) / 1000) * this.commandsPerSecond);
    this.tokensAt = now;
    while (this.outbox.length > 0 && this.tokens >= 1) {
      this.tokens -= 1;
      const frame = this.outbox.shift() as string;
      try {
        socket.send(frame);
      } catch {
        this.lost(socket);
        return;
      }
    }
    if (this.outbox.length > 0 && this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        this.flush();
      }, Math.ceil(((1 - this.tokens) / this.commandsPerSecond) * 1000));
    }
  }

  private sendSubscribe(sub: Sub): void {
    sub.state = "sending";
    const extra: Record<string, unknown> = {};
    if (sub.positions.size > 0) {
      extra.recover = Object.fromEntries([...sub.positions].map(([key, p]) => [key, { offset: p.offset, epoch: p.epoch }]));
    }
    this.send(sub.route, "subscribe", sub.request, sub, extra);
  }

  /**
   * Once a route has no command in flight, the host's state for it is known
   * exactly: unsubscribe topics nobody listens to any more and subscribe
   * again where an unsubscribe overtook a newer subscribe.
   */
  private reconcile(route: string): void {
    if (!this.socketOpen || (this.inflightPerRoute.get(route) ?? 0) > 0) return;
    for (const [topicKey, held] of [...this.hostTopics]) {
      if (held.route !== route) continue;
      const sub = this.subsByTopic.get(topicKey);
      if (!sub || sub.listeners.size === 0) this.send(route, "unsubscribe", held.request, undefined);
    }
    for (const [topicKey, sub] of this.subsByTopic) {
      if (sub.route === route && sub.state === "active" && sub.listeners.size > 0 && !this.hostTopics.has(topicKey)) {
        this.sendSubscribe(sub);
      }
    }
  }

  // ---- frames from the host ----

  private received(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    this.touch(socket);
    this.attempt = 0;
    if (typeof data !== "string") return;
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!isObject(frame) || typeof frame.type !== "string") return;
    const type = frame.type;
    const payload = isObject(frame.payload) ? frame.payload : {};
    if (type.endsWith(".update")) {
      this.update(type.slice(0, -".update".length), payload);
    } else if (type.endsWith(".subscribe.response") || type.endsWith(".unsubscribe.response")) {
      const op: Op = type.endsWith(".subscribe.response") ? "subscribe" : "unsubscribe";
      const route = type.slice(0, -`.${op}.response`.length);
      const command = this.takeCommand(frame.id, (c) => c.route === route && c.op === op);
      if (command) this.answered(command, payload);
    } else if (type === "error") {
      const message = typeof payload.message === "string" ? payload.message : "the host refused a frame";
      // From a host that echoes no id, the oldest command is the one refused: replies keep command order.
      const command = this.takeCommand(frame.id, () => true);
      if (command) this.answered(command, { status: "error", message });
      else this.emit("hostError", message);
    } else if (type === "route.removed") {
      this.routeRemoved(payload);
    } else if (type === "routes.changed") {
      const routes = Array.isArray(payload.routes) ? payload.routes.filter(isRouteVersion) : [];
      this.emit("routesChanged", routes);
    }
  }

  private takeCommand(id: unknown, fallback: (c: Command) => boolean): Command | undefined {
    let command: Command | undefined;
    if (typeof id === "number" || typeof id === "string") {
      command = this.pending.get(Number(id));
    } else {
      for (const c of this.pending.values()) {
        if (fallback(c)) {
          command = c;
          break;
        }
      }
    }
    if (!command) return undefined;
    this.pending.delete(command.id);
    const left = (this.inflightPerRoute.get(command.route) ?? 1) - 1;
    if (left > 0) this.inflightPerRoute.set(command.route, left);
    else this.inflightPerRoute.delete(command.route);
    return command;
  }

  private answered(command: Command, reply: Record<string, unknown>): void {
    const ok = reply.status === "ok";
    const topic = typeof reply.topic === "string" ? reply.topic : undefined;
    const message = typeof reply.message === "string" ? reply.message : ok ? "ok" : "the host refused the request";
    const route = command.route;
    if (command.op === "unsubscribe") {
      if (ok && topic !== undefined) {
        this.hostTopics.delete(join(route, topic));
        this.settleUnsubscribeWaiters(join(route, topic));
      } else if (!ok) {
        const error = new WsRouterError("rejected", message, { route, errors: problems(reply.errors) });
        for (const [key, held] of this.hostTopics) {
          if (held.route === route && held.request === command.request) this.settleUnsubscribeWaiters(key, error);
        }
      }
    } else if (command.sub) {
      this.subscribed(command.sub, ok, topic, message, reply);
    }
    this.reconcile(route);
  }

  private subscribed(sub: Sub, ok: boolean, topic: string | undefined, message: string, reply: Record<string, unknown>): void {
    const route = sub.route;
    if (!ok || topic === undefined) {
      const error = new WsRouterError("rejected", message, { route, errors: problems(reply.errors) });
      const renewing = sub.renewing;
      this.forget(sub);
      for (const listener of [...sub.listeners.values()]) {
        this.detach(listener);
        if (listener.waiter) {
          clearTimeout(listener.waiter.timer);
          listener.waiter.reject(error);
        } else if (renewing) {
          listener.options.onError?.(error);
        }
      }
      return;
    }
    const topicKey = join(route, topic);
    this.hostTopics.set(topicKey, { route, topic, request: sub.request });
    if (sub.listeners.size === 0) {
      // Everyone left before the reply: reconcile unsubscribes.
      this.forget(sub);
      return;
    }
    let target = sub;
    const existing = this.subsByTopic.get(topicKey);
    if (existing && existing !== sub && existing.listeners.size > 0) {
      // Another request for the same topic: one subscription serves both.
      for (const listener of sub.listeners.values()) {
        listener.sub = existing;
        existing.listeners.set(listener.id, listener);
      }
      sub.listeners.clear();
      this.forget(sub);
      this.subsByRequest.set(sub.requestKey, existing);
      target = existing;
    } else {
      if (sub.topic !== undefined && sub.topic !== topic) this.subsByTopic.delete(join(route, sub.topic));
      sub.topic = topic;
      sub.state = "active";
      this.subsByTopic.set(topicKey, sub);
      this.subsByRequest.set(sub.requestKey, sub);
    }
    this.settleUnsubscribeWaiters(topicKey);
    const renewed = sub.renewing;
    sub.renewing = false;
    const recovered = typeof reply.recovered === "boolean" ? reply.recovered : undefined;
    const unrecoveredKeys = Object.freeze(this.track(target, reply.positions));
    for (const listener of [...target.listeners.values()]) {
      if (listener.waiter) {
        clearTimeout(listener.waiter.timer);
        listener.waiter.resolve(topic);
        listener.waiter = undefined;
      } else if (renewed && listener.sub === target) {
        safely(() => listener.options.onResubscribed?.({ topic, recovered, unrecoveredKeys }));
      }
    }
  }

  /**
   * Start tracking each key's position from a subscribe reply (a route with
   * history sends `positions: {"<key>": {offset, epoch, recovered?}}`).
   * A key recovered in the same epoch keeps the client's own position: the
   * replay that follows the reply advances it. Any other key starts at the
   * host's position, so that the next reconnect can recover from it even if
   * no update arrives meanwhile. Returns the keys the host could not
   * recover.
   */
  private track(sub: Sub, positions: unknown): string[] {
    const unrecovered: string[] = [];
    if (!isObject(positions)) return unrecovered;
    for (const [key, p] of Object.entries(positions)) {
      if (!isObject(p) || typeof p.offset !== "number" || typeof p.epoch !== "string") continue;
      if (p.recovered === false) unrecovered.push(key);
      const mine = sub.positions.get(key);
      if (mine && mine.epoch === p.epoch && p.recovered === true) continue;
      sub.positions.set(key, { offset: p.offset, epoch: p.epoch, delivered: false });
    }
    return unrecovered;
  }

  private update(route: string, payload: Record<string, unknown>): void {
    if (typeof payload.topic !== "string") return;
    const topic = payload.topic;
    const sub = this.subsByTopic.get(join(route, topic));
    if (!sub || sub.listeners.size === 0) return;
    const key = typeof payload.key === "string" ? payload.key : topic;
    const info: UpdateInfo = { route, topic, key };
    if (typeof payload.offset === "number" && typeof payload.epoch === "string") {
      const seen = sub.positions.get(key);
      // A replay or a snapshot may repeat what was already delivered; show each update once.
      if (seen && seen.epoch === payload.epoch && (payload.offset < seen.offset || (payload.offset === seen.offset && seen.delivered))) {
        return;
      }
      sub.positions.set(key, { offset: payload.offset, epoch: payload.epoch, delivered: true });
      info.offset = payload.offset;
      info.epoch = payload.epoch;
    }
    // Shared by every listener of the topic: nobody may change what the others see.
    Object.freeze(info);
    for (const listener of [...sub.listeners.values()]) {
      if (listener.waiter) continue;
      safely(() => listener.onUpdate(payload.payload, info));
    }
  }

  private routeRemoved(payload: Record<string, unknown>): void {
    if (typeof payload.route !== "string") return;
    const route = payload.route;
    const message = typeof payload.message === "string" ? payload.message : `route ${JSON.stringify(route)} was removed`;
    const topics = Array.isArray(payload.topics) ? payload.topics.filter((t): t is string => typeof t === "string") : undefined;
    for (const [topicKey, sub] of [...this.subsByTopic]) {
      if (sub.route !== route || (topics && sub.topic !== undefined && !topics.includes(sub.topic))) continue;
      this.hostTopics.delete(topicKey);
      this.forget(sub);
      const error = new WsRouterError("route_removed", message, { route });
      for (const listener of [...sub.listeners.values()]) {
        this.detach(listener);
        safely(() => listener.options.onError?.(error));
      }
      this.settleUnsubscribeWaiters(topicKey);
    }
  }

  // ---- bookkeeping ----

  /** Remove a listener from the maps (not its waiter: the caller settles that). */
  private detach(listener: Listener): void {
    const key = join(listener.route, listener.id);
    if (this.listeners.get(key) === listener) this.listeners.delete(key);
    if (listener.sub.listeners.get(listener.id) === listener) listener.sub.listeners.delete(listener.id);
    const sub = listener.sub;
    if (sub.listeners.size === 0 && sub.state !== "sending") this.forget(sub);
  }

  private forget(sub: Sub): void {
    if (this.subsByRequest.get(sub.requestKey) === sub) this.subsByRequest.delete(sub.requestKey);
    for (const [key, other] of this.subsByRequest) if (other === sub) this.subsByRequest.delete(key);
    if (sub.topic !== undefined && this.subsByTopic.get(join(sub.route, sub.topic)) === sub) {
      this.subsByTopic.delete(join(sub.route, sub.topic));
    }
  }

  private settleUnsubscribeWaiters(topicKey: string, error?: WsRouterError): void {
    const list = this.unsubscribeWaiters.get(topicKey);
    if (!list) return;
    this.unsubscribeWaiters.delete(topicKey);
    for (const waiter of list) {
      clearTimeout(waiter.timer);
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  private settleAllUnsubscribeWaiters(): void {
    for (const key of [...this.unsubscribeWaiters.keys()]) this.settleUnsubscribeWaiters(key);
  }

  private removeUnsubscribeWaiter(topicKey: string, waiter: UnsubscribeWaiter): void {
    const list = this.unsubscribeWaiters.get(topicKey);
    if (!list) return;
    const rest = list.filter((w) => w !== waiter);
    if (rest.length) this.unsubscribeWaiters.set(topicKey, rest);
    else this.unsubscribeWaiters.delete(topicKey);
  }
}

function ignore(): void {}

function join(route: string, rest: string): string {
  return `${route}\u0000${rest}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isRouteVersion(value: unknown): value is RouteVersion {
  return isObject(value) && typeof value.name === "string" && typeof value.version === "string";
}

function problems(value: unknown): Problem[] {
  if (!Array.isArray(value)) return [];
  return value
    .filter(isObject)
    .map((p) => ({ path: typeof p.path === "string" ? p.path : "", message: typeof p.message === "string" ? p.message : String(p.message) }));
}

/** JSON with object keys sorted, so that two spellings of one request share a subscription before the host replies. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    isObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v,
  ) ?? "null";
}

function positive(value: number | undefined, fallback: number, name: string, zeroAllowed = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!zeroAllowed && value === 0)) {
    throw new RangeError(`${name} must be a ${zeroAllowed ? "non-negative" : "positive"} number of milliseconds, got ${value}`);
  }
  return value;
}

/** Run a caller's callback; an exception in it must not break the client, but must not vanish either. */
function safely(callback: () => void): void {
  try {
    callback();
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}
