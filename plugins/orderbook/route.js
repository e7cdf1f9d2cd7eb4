// The `orderbook` route, written in JavaScript: order book levels of one
// symbol. Build: `just build-plugins` (or, from this folder after
// `npm install`, `npx ws-router-build route.js orderbook.wasm`).

import { defineRoute, InvalidRequest, Type } from "ws-router-sdk";

const OrderbookSubscriptionRequest = Type.Object(
  {
    symbol: Type.String({ description: 'Ticker symbol, upper case, e.g. "AAPL".', minLength: 1 }),
    depth: Type.Integer({ description: "Price levels per side.", default: 10, minimum: 1, maximum: 50 }),
    tick: Type.Number({ description: "Price bucket the levels are aggregated to.", default: 0.01, exclusiveMinimum: 0 }),
  },
  { description: "The order book of one symbol, aggregated to a tick size." },
);

const Level = Type.Object({ price: Type.Number(), size: Type.Number() });

const OrderbookSnapshot = Type.Object(
  {
    time: Type.Integer({ description: "Snapshot time, Unix milliseconds." }),
    bids: Type.Array(Level),
    asks: Type.Array(Level),
  },
  { description: "The top levels of the book, best first." },
);

// The component's exports, one per WIT interface: the route, how slow
// clients are treated (each update is a whole snapshot, so a client that
// cannot keep up is sent the newest book instead of being disconnected), and
// what the host keeps (the newest book for a new subscriber at once; no
// history: after a reconnect, the newest book is all a client needs).
export const { route, delivery, retention } = defineRoute({
  name: "orderbook",
  version: "0.1.0",
  description:
    "Order book snapshots of one symbol. Subscribe with a symbol, a depth and a tick size; each update is a snapshot of the top levels.",
  tags: ["datafeed"],
  delivery: "latest-value",
  retention: { snapshot: true },
  request: OrderbookSubscriptionRequest,
  data: OrderbookSnapshot,
  // The topic is the default (canonical) one and so is the key. One rule
  // the schema does not say, checked here; the message reaches the client.
  keys(request, topic) {
    if (request.symbol !== request.symbol.toUpperCase()) {
      throw new InvalidRequest(`symbol must be upper case: ${request.symbol.toUpperCase()}, not ${request.symbol}`);
    }
    return [topic];
  },
});
