// The client against the real host binary (target/debug/ws-router-host),
// over real WebSockets (the `ws` package: Node 20 has no global WebSocket).

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { WsRouterClient, WsRouterError, type ConnectionState, type WebSocketConstructor } from "ws-router-client";
import { createWsAdapter, type Bar, type Trade } from "ws-router-client/generated";
import { PACKAGE, startHost, until, type Host } from "./host.js";

const AAPL_1 = 'bars:{"resolution":"1","symbol":"AAPL"}';

function bar(time: number) {
  return { time, open: 1, high: 2, low: 0.5, close: 1.5, volume: 10 };
}

const clients = new Set<WsRouterClient>();

function client(url: string, options: Partial<ConstructorParameters<typeof WsRouterClient>[0]> = {}) {
  const c = new WsRouterClient({ url, WebSocket, requestTimeoutMs: 5000, reconnect: { initialDelayMs: 50, maxDelayMs: 500 }, ...options });
  clients.add(c);
  return c;
}

// A test that fails before its own close() must not leave a client reconnecting (the process would never exit).
afterEach(() => {
  for (const c of clients) c.close();
  clients.clear();
});

describe("against a host with the demo feed", () => {
  let host: Host;
  before(async () => {
    host = await startHost({ args: ["--demo-feed", "--demo-rate", "20"] });
  });
  after(async () => {
    await host?.stop();
  });

  test("a typed subscribe receives demo-feed updates", async () => {
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const bars: Bar[] = [];
    const topic = await adapter.bars.subscribe("chart-1", { symbol: "AAPL", resolution: "1" }, (b) => bars.push(b));
    assert.equal(topic, AAPL_1);
    await until("two bars", () => bars.length >= 2);
    for (const b of bars) {
      assert.equal(typeof b.close, "number");
      assert.ok(b.high >= b.low, `high >= low in ${JSON.stringify(b)}`);
    }
    ws.close();
    assert.equal(ws.state, "closed");
  });
});

describe("against a host fed over HTTP", () => {
  let host: Host;
  before(async () => {
    host = await startHost();
  });
  after(async () => {
    await host?.stop();
  });

  test("listeners of one topic share one subscription; the last to leave unsubscribes on the host", async () => {
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const seen = { a: 0, b: 0, c: 0 };
    // Three listeners, two spellings of the same request (the default resolution is "1").
    const topics = await Promise.all([
      adapter.bars.subscribe("a", { symbol: "AAPL" }, () => seen.a++),
      adapter.bars.subscribe("b", { symbol: "AAPL", resolution: "1" }, () => seen.b++),
      adapter.bars.subscribe("c", { symbol: "AAPL" }, () => seen.c++),
    ]);
    assert.deepEqual(topics, [AAPL_1, AAPL_1, AAPL_1]);
    assert.equal(await host.subscribers(AAPL_1), 1);

    await host.publish({ route: "bars", topic: AAPL_1, data: bar(1) });
    await until("every listener's update", () => seen.a === 1 && seen.b === 1 && seen.c === 1);

    await adapter.bars.unsubscribe("a");
    await adapter.bars.unsubscribe("b");
    assert.equal(await host.subscribers(AAPL_1), 1, "one listener left: still subscribed");
    await host.publish({ route: "bars", topic: AAPL_1, data: bar(2) });
    await until("the remaining listener's update", () => seen.c === 2);
    assert.deepEqual([seen.a, seen.b], [1, 1], "unsubscribed listeners get nothing more");

    await adapter.bars.unsubscribe("c");
    assert.equal(await host.subscribers(AAPL_1), 0, "the last listener left: unsubscribed on the host");
    // Unknown and repeated ids are no error.
    await adapter.bars.unsubscribe("c");
    await adapter.bars.unsubscribe("never-subscribed");
    ws.close();
  });

  test("subscribing a listener id again replaces its subscription", async () => {
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const symbols: string[] = [];
    await adapter.trades.subscribe("panel", { symbols: ["AAPL"] }, (t: Trade) => symbols.push(t.symbol));
    await adapter.trades.subscribe("panel", { symbols: ["MSFT"] }, (t: Trade) => symbols.push(`new ${t.symbol}`));
    await until("the old subscription to end on the host", async () => (await host.subscribers("trades:AAPL")) === 0);
    assert.equal(await host.subscribers("trades:MSFT"), 1);
    const trade = (symbol: string) => ({ route: "trades", topic: `trades:${symbol}`, data: { symbol, price: 1, quantity: 1, time: 1, side: "buy" } });
    await host.publish([trade("AAPL"), trade("MSFT")]);
    await until("the new listener's update", () => symbols.length === 1);
    assert.deepEqual(symbols, ["new MSFT"]);
    ws.close();
  });

  test("an invalid request rejects with the host's message and errors; the connection keeps serving", async () => {
    const ws = client(host.wsUrl);
    // Untyped on purpose: the generated types would not let this compile.
    const failure = await ws.subscribe("bars", "bad", { resolution: 5 }, () => {}).then(
      () => assert.fail("an invalid request was accepted"),
      (e: unknown) => e,
    );
    assert.ok(failure instanceof WsRouterError);
    assert.equal(failure.code, "rejected");
    assert.equal(failure.route, "bars");
    assert.match(failure.message, /^invalid request: .*"symbol" is a required property/);
    assert.deepEqual(
      failure.errors.map((p) => p.path).sort(),
      ["", "/resolution"],
      `one problem per violation: ${JSON.stringify(failure.errors)}`,
    );
    const unknown = await ws.subscribe("nosuch", "x", {}, () => {}).catch((e: WsRouterError) => e);
    assert.ok(unknown instanceof WsRouterError);
    assert.match(unknown.message, /unknown route "nosuch"/);

    const topic = await createWsAdapter(ws).bars.subscribe("good", { symbol: "MSFT" }, () => {});
    assert.equal(topic, 'bars:{"resolution":"1","symbol":"MSFT"}');
    ws.close();
  });

  test("close() rejects what is pending and leaves no listener behind", async () => {
    const ws = client(host.wsUrl);
    const pending = ws.subscribe("bars", "x", { symbol: "GOOGL" }, () => {});
    ws.close();
    const error = await pending.catch((e: WsRouterError) => e);
    assert.ok(error instanceof WsRouterError);
    assert.equal(error.code, "closed");
    await assert.rejects(ws.subscribe("bars", "y", { symbol: "GOOGL" }, () => {}), /closed/);
  });
});

test("after the host restarts on the same port, the client reconnects and its subscriptions receive updates again", async () => {
  const host = await startHost();
  try {
    const ws = client(host.wsUrl);
    const states: ConnectionState[] = [];
    ws.on("state", (s) => states.push(s));
    const adapter = createWsAdapter(ws);
    const bars: number[] = [];
    const trades: number[] = [];
    const renewed: string[] = [];
    const errors: WsRouterError[] = [];
    const options = { onResubscribed: (info: { topic: string }) => renewed.push(info.topic), onError: (e: WsRouterError) => errors.push(e) };
    await adapter.bars.subscribe("chart", { symbol: "AAPL" }, (b) => bars.push(b.time), options);
    await adapter.trades.subscribe("tape", { symbols: ["AAPL"] }, (t) => trades.push(t.time), options);
    await host.publish({ route: "bars", topic: AAPL_1, data: bar(1) });
    await until("the first bar", () => bars.length === 1);

    await host.kill();
    await until("the client to notice", () => ws.state === "reconnecting");
    await host.restart();
    await until("both subscriptions renewed", () => renewed.length === 2, 15_000);
    assert.deepEqual(renewed.sort(), [AAPL_1, 'trades:{"symbols":["AAPL"]}']);
    assert.equal(await host.subscribers(AAPL_1), 1);
    await host.publish([
      { route: "bars", topic: AAPL_1, data: bar(2) },
      { route: "trades", topic: "trades:AAPL", data: { symbol: "AAPL", price: 1, quantity: 1, time: 7, side: "sell" } },
    ]);
    await until("updates after the restart", () => bars.length === 2 && trades.length === 1);
    assert.deepEqual(bars, [1, 2]);
    assert.deepEqual(trades, [7]);
    assert.deepEqual(errors, []);
    assert.deepEqual(states.slice(0, 3), ["connecting", "open", "reconnecting"]);
    assert.equal(states.at(-1), "open");
    ws.close();
  } finally {
    await host.stop();
  }
});

test("many subscriptions renew under the host's command rate limit", async () => {
  const host = await startHost({ args: ["--commands-per-sec", "20"] });
  try {
    const ws = client(host.wsUrl, { commandsPerSecond: 15 });
    const adapter = createWsAdapter(ws);
    const symbols = Array.from({ length: 40 }, (_, i) => `S${i}`);
    const renewed: string[] = [];
    const errors: WsRouterError[] = [];
    const options = { onResubscribed: (info: { topic: string }) => renewed.push(info.topic), onError: (e: WsRouterError) => errors.push(e) };
    // 40 commands at once would be refused past the host's 20 (and get the connection closed).
    await Promise.all(symbols.map((s) => adapter.trades.subscribe(s, { symbols: [s] }, () => {}, options)));
    await host.restart();
    await until("every subscription renewed", () => renewed.length === symbols.length, 20_000);
    assert.deepEqual(errors, []);
    for (const s of ["S0", "S39"]) assert.equal(await host.subscribers(`trades:${s}`), 1);
    ws.close();
  } finally {
    await host.stop();
  }
});

test("one renewal refused does not stop the others", async () => {
  const host = await startHost();
  try {
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const errors: WsRouterError[] = [];
    const bars: number[] = [];
    await adapter.quotes.subscribe("q", { symbols: ["AAPL"] }, () => {}, { onError: (e) => errors.push(e) });
    await adapter.bars.subscribe("b", { symbol: "AAPL" }, (b) => bars.push(b.time));
    await host.kill();
    // The host comes back without the quotes route.
    fs.rmSync(path.join(host.pluginsDir, "quotes.wasm"));
    await host.restart();
    await until("the refused renewal to reach its listener", () => errors.length === 1, 15_000);
    assert.equal(errors[0]?.code, "rejected");
    assert.match(errors[0]?.message ?? "", /unknown route "quotes"/);
    await until("bars renewed", async () => (await host.subscribers(AAPL_1)) === 1, 10_000);
    await host.publish({ route: "bars", topic: AAPL_1, data: bar(3) });
    await until("a bar after the restart", () => bars.length === 1);
    ws.close();
  } finally {
    await host.stop();
  }
});

test("a removed route reaches its listeners' error callback", async () => {
  const host = await startHost();
  try {
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const changes: string[][] = [];
    ws.on("routesChanged", (routes) => changes.push(routes.map((r) => r.name).sort()));
    const errors: WsRouterError[] = [];
    await adapter.trades.subscribe("tape", { symbols: ["AAPL"] }, () => {}, { onError: (e) => errors.push(e) });
    await adapter.trades.subscribe("tape-2", { symbols: ["AAPL"] }, () => {}, { onError: (e) => errors.push(e) });
    fs.rmSync(path.join(host.pluginsDir, "trades.wasm"));
    await until("route.removed", () => errors.length === 2, 15_000);
    for (const e of errors) {
      assert.equal(e.code, "route_removed");
      assert.equal(e.route, "trades");
      assert.match(e.message, /route "trades" was removed/);
    }
    await until("routes.changed", () => changes.some((c) => !c.includes("trades")), 5000);
    // The listeners are gone: unsubscribing them is a no-op, and the route is refused now.
    await adapter.trades.unsubscribe("tape");
    await assert.rejects(adapter.trades.subscribe("tape", { symbols: ["AAPL"] }, () => {}), /unknown route "trades"/);
    ws.close();
  } finally {
    await host.stop();
  }
});

test("a host that cannot be reached: subscribe rejects in bounded time, close() stops retrying", async () => {
  const ws = client("ws://127.0.0.1:9/api/v1/ws", { requestTimeoutMs: 400 });
  const states: ConnectionState[] = [];
  ws.on("state", (s) => states.push(s));
  const started = Date.now();
  const error = await ws.subscribe("bars", "x", { symbol: "AAPL" }, () => {}).catch((e: WsRouterError) => e);
  assert.ok(error instanceof WsRouterError);
  assert.equal(error.code, "timeout");
  assert.ok(Date.now() - started < 2000);
  assert.ok(states.includes("reconnecting"), `states: ${states}`);
  ws.close();
  assert.equal(ws.state, "closed");
});

test("close() leaves the process free to exit", async () => {
  const host = await startHost();
  try {
    // A separate Node process that connects, subscribes, receives, closes and must then exit by itself.
    const script = `
      import { WebSocket } from "ws";
      import { WsRouterClient } from "ws-router-client";
      import { createWsAdapter } from "ws-router-client/generated";
      const client = new WsRouterClient({ url: process.argv[1], WebSocket, idleTimeoutMs: 30000 });
      const adapter = createWsAdapter(client);
      await adapter.bars.subscribe("x", { symbol: "AAPL" }, () => {});
      const failed = adapter.quotes.subscribe("y", { symbols: ["AAPL"] }, () => {});
      client.close();
      await failed.catch(() => {});
      console.log("closed");
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, host.wsUrl], { cwd: PACKAGE, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d));
    child.stderr.on("data", (d: Buffer) => (output += d));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve(null);
      }, 10_000);
      child.once("exit", (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 0, `the process exits on its own after close(); output:\n${output}`);
    assert.match(output, /closed/);
  } finally {
    await host.stop();
  }
});

describe("command ids and per-module endpoints", () => {
  let host: Host;
  before(async () => {
    host = await startHost({ plugins: ["bars", "quotes", "trades"] });
  });
  after(async () => {
    await host?.stop();
  });

  test("every command carries an id and its reply echoes it", async () => {
    const sent: Array<{ type: string; id?: unknown }> = [];
    const received: Array<{ type: string; id?: unknown }> = [];
    // The real `ws` socket, recording the frames both ways.
    class Recording extends WebSocket {
      constructor(url: string) {
        super(url);
        this.on("message", (data: Buffer) => received.push(JSON.parse(data.toString())));
      }
      override send(data: string) {
        sent.push(JSON.parse(data));
        super.send(data);
      }
    }
    const ws = client(host.wsUrl, { WebSocket: Recording as unknown as WebSocketConstructor });
    const adapter = createWsAdapter(ws);
    await adapter.bars.subscribe("a", { symbol: "AAPL" }, () => {});
    await assert.rejects(adapter.trades.subscribe("b", {} as never, () => {}));
    await adapter.bars.unsubscribe("a");
    assert.deepEqual(
      sent.map((f) => f.type),
      ["bars.subscribe", "trades.subscribe", "bars.unsubscribe"],
    );
    assert.deepEqual(
      received.map((f) => [f.type, f.id]),
      sent.map((f) => [`${f.type}.response`, f.id]),
      "each reply carries its command's id",
    );
    ws.close();
  });

  test("the generator reads a module's document from the host", async () => {
    const out = path.join(PACKAGE, "dist/test-gen/from-url");
    fs.rmSync(out, { recursive: true, force: true });
    const run = spawnSync(process.execPath, ["codegen/generate.mjs", `${host.httpUrl}/api/v1/datafeed/ws/asyncapi.json`, "--out", out], {
      cwd: PACKAGE,
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    const index = fs.readFileSync(path.join(out, "index.ts"), "utf8");
    assert.match(index, /export const ROUTES = \["bars", "quotes"\] as const;/);
    assert.match(index, /export const WS_PATH = "\/api\/v1\/datafeed\/ws";/);
  });

  test("a module's endpoint serves only its routes", async () => {
    const ws = client(`ws://${host.addr}/api/v1/datafeed/ws`);
    const adapter = createWsAdapter(ws);
    assert.equal(await adapter.bars.subscribe("a", { symbol: "AAPL" }, () => {}), AAPL_1);
    assert.equal(await host.subscribers(AAPL_1), 1);
    const refused = await adapter.trades.subscribe("b", { symbols: ["AAPL"] }, () => {}).catch((e: WsRouterError) => e);
    assert.ok(refused instanceof WsRouterError);
    assert.match(refused.message, /unknown route "trades"/);
    ws.close();
  });
});
