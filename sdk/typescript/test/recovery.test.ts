// Snapshots and recovery (issue 16) through the client, against the real
// host: bars keeps a snapshot and 500 updates per key for 10 minutes,
// trades 1,000 per key for 5 minutes (plugins/*). The network is cut under
// the client by a switch around the `ws` WebSocket, while the host keeps
// running and publishing.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { WebSocket } from "ws";
import { WsRouterClient, type ResubscribeInfo, type UpdateInfo, type WebSocketConstructor } from "ws-router-client";
import { createWsAdapter, type Bar, type Trade } from "ws-router-client/generated";
import { startHost, until } from "./host.js";

const AAPL_1 = 'bars:{"resolution":"1","symbol":"AAPL"}';

function bar(time: number) {
  return { time, open: 1, high: 2, low: 0.5, close: 1.5, volume: 10 };
}

function trade(symbol: string, time: number) {
  return { symbol, price: 1, quantity: 1, time, side: "buy" };
}

/**
 * The `ws` WebSocket behind a switch: `cut()` drops every open socket at
 * once (no closing handshake, as a lost network does), and while the
 * network is down, connecting fails at once.
 */
function network() {
  const sockets = new Set<WebSocket>();
  const net = {
    down: false,
    cut() {
      net.down = true;
      for (const s of sockets) s.terminate();
      sockets.clear();
    },
  };
  class Switched extends WebSocket {
    constructor(url: string) {
      if (net.down) throw new Error("network down");
      super(url);
      sockets.add(this);
    }
  }
  return { net, WebSocket: Switched as unknown as WebSocketConstructor };
}

const clients = new Set<WsRouterClient>();

function client(url: string, WebSocketImpl: WebSocketConstructor = WebSocket as unknown as WebSocketConstructor) {
  const c = new WsRouterClient({ url, WebSocket: WebSocketImpl, requestTimeoutMs: 5000, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  clients.add(c);
  return c;
}

afterEach(() => {
  for (const c of clients) c.close();
  clients.clear();
});

test("a dropped connection recovers what was published meanwhile: no hole, no duplicate, per key", { timeout: 60_000 }, async () => {
  const host = await startHost();
  try {
    const { net, WebSocket: Switched } = network();
    const ws = client(host.wsUrl, Switched);
    const adapter = createWsAdapter(ws);
    const bars: { time: number; offset?: number }[] = [];
    const tape: { symbol: string; time: number; key: string; offset?: number }[] = [];
    const renewed: ResubscribeInfo[] = [];
    const onResubscribed = (info: ResubscribeInfo) => renewed.push(info);
    await adapter.bars.subscribe("chart", { symbol: "AAPL" }, (b: Bar, info: UpdateInfo) => bars.push({ time: b.time, offset: info.offset }), {
      onResubscribed,
    });
    await adapter.trades.subscribe(
      "tape",
      { symbols: ["AAPL", "MSFT"] },
      (t: Trade, info: UpdateInfo) => tape.push({ symbol: t.symbol, time: t.time, key: info.key, offset: info.offset }),
      { onResubscribed },
    );

    for (let t = 1; t <= 5; t++) await host.publish({ route: "bars", topic: AAPL_1, data: bar(t) });
    await host.publish([
      { route: "trades", topic: "trades:AAPL", data: trade("AAPL", 1) },
      { route: "trades", topic: "trades:MSFT", data: trade("MSFT", 1) },
    ]);
    await until("bars 1..5 and a trade of each symbol", () => bars.length === 5 && tape.length === 2);
    assert.deepEqual(
      bars.map((b) => b.offset),
      [1, 2, 3, 4, 5],
      "bars carry their key's offsets",
    );

    net.cut();
    await until("the client to notice", () => ws.state === "reconnecting");
    await until("the host to drop the subscription", async () => (await host.subscribers(AAPL_1)) === 0);
    // Published while the client is away: nobody receives these live.
    for (let t = 6; t <= 8; t++) await host.publish({ route: "bars", topic: AAPL_1, data: bar(t) });
    await host.publish([
      { route: "trades", topic: "trades:AAPL", data: trade("AAPL", 2) },
      { route: "trades", topic: "trades:AAPL", data: trade("AAPL", 3) },
      { route: "trades", topic: "trades:MSFT", data: trade("MSFT", 2) },
    ]);
    net.down = false;

    await until("both subscriptions renewed", () => renewed.length === 2, 15_000);
    for (const info of renewed) {
      assert.equal(info.recovered, true, JSON.stringify(info));
      assert.deepEqual(info.unrecoveredKeys, [], JSON.stringify(info));
    }
    await until("the missed updates", () => bars.length === 8 && tape.length === 5);
    await host.publish({ route: "bars", topic: AAPL_1, data: bar(9) });
    await host.publish({ route: "trades", topic: "trades:MSFT", data: trade("MSFT", 3) });
    await until("live updates after the replay", () => bars.length === 9 && tape.length === 6);

    assert.deepEqual(
      bars.map((b) => [b.time, b.offset]),
      [1, 2, 3, 4, 5, 6, 7, 8, 9].map((t) => [t, t]),
      "every bar once, in order",
    );
    for (const symbol of ["AAPL", "MSFT"]) {
      const mine = tape.filter((t) => t.symbol === symbol);
      assert.ok(mine.every((t) => t.key === `trades:${symbol}`), JSON.stringify(mine));
      assert.deepEqual(
        mine.map((t) => [t.time, t.offset]),
        [1, 2, 3].map((n) => [n, n]),
        `every ${symbol} trade once, in order, with its key's offsets`,
      );
    }
    // Nothing more arrives (a duplicate would come right after the replay).
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(bars.length, 9);
    assert.equal(tape.length, 6);
    // One subscription, renewed once (subscribers are counted by key).
    assert.equal(await host.subscribers("trades:AAPL"), 1);
    assert.equal(await host.subscribers(AAPL_1), 1);
  } finally {
    await host.stop();
  }
});

test("after a host restart (a new epoch) the renewal says what was not recovered, and updates go on", { timeout: 60_000 }, async () => {
  const host = await startHost();
  try {
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const bars: UpdateInfo[] = [];
    const renewed: ResubscribeInfo[] = [];
    const errors: string[] = [];
    await adapter.bars.subscribe("chart", { symbol: "AAPL" }, (_b: Bar, info: UpdateInfo) => bars.push(info), {
      onResubscribed: (info) => renewed.push(info),
      onError: (e) => errors.push(e.message),
    });
    await host.publish({ route: "bars", topic: AAPL_1, data: bar(1) });
    await until("the first bar", () => bars.length === 1);

    // A node without Redis keeps history in memory: a restart loses it.
    await host.restart();
    await until("the subscription renewed or refused", () => renewed.length === 1 || errors.length > 0, 15_000);
    assert.deepEqual(errors, [], "the renewal was refused");
    assert.equal(renewed[0]?.recovered, false);
    assert.deepEqual(renewed[0]?.unrecoveredKeys, [AAPL_1]);

    await host.publish({ route: "bars", topic: AAPL_1, data: bar(2) });
    await until("a bar of the new epoch", () => bars.length === 2);
    assert.notEqual(bars[1]?.epoch, bars[0]?.epoch, "the epoch changed");
    assert.equal(bars[1]?.offset, 1, "offsets start again in the new epoch");
  } finally {
    await host.stop();
  }
});

test("a route with a snapshot: a new subscription receives the last update at once, once", { timeout: 60_000 }, async () => {
  const host = await startHost();
  try {
    for (let t = 1; t <= 3; t++) await host.publish({ route: "bars", topic: AAPL_1, data: bar(t) });
    const ws = client(host.wsUrl);
    const adapter = createWsAdapter(ws);
    const bars: [number, number | undefined][] = [];
    await adapter.bars.subscribe("chart", { symbol: "AAPL" }, (b: Bar, info: UpdateInfo) => bars.push([b.time, info.offset]));
    await until("the snapshot", () => bars.length === 1, 5000);
    assert.deepEqual(bars, [[3, 3]]);
    await host.publish({ route: "bars", topic: AAPL_1, data: bar(4) });
    await until("the next bar", () => bars.length === 2);
    assert.deepEqual(bars, [
      [3, 3],
      [4, 4],
    ]);
  } finally {
    await host.stop();
  }
});
