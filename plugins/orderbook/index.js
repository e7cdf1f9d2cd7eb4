// The `orderbook` route, written in JavaScript: order book levels of one
// symbol. Build: `just build-plugins` (or, from the repository root,
// `node sdk/js/build.mjs plugins/orderbook/index.js plugins/orderbook.wasm`).

import { defineRoute, deliveryOf, InvalidRequest, t } from "../../sdk/js/ws-router.js";

const OrderbookSubscriptionRequest = t.object(
  {
    symbol: t.string({ description: 'Ticker symbol, upper case, e.g. "AAPL".', minLength: 1 }),
    depth: t.integer({ description: "Price levels per side.", default: 10, minimum: 1, maximum: 50 }),
    tick: t.number({ description: "Price bucket the levels are aggregated to.", default: 0.01, exclusiveMinimum: 0 }),
  },
  { description: "The order book of one symbol, aggregated to a tick size." },
);

const Level = t.object({ price: t.number(), size: t.number() });

const OrderbookSnapshot = t.object(
  {
    time: t.integer({ description: "Snapshot time, Unix milliseconds." }),
    bids: t.array(Level),
    asks: t.array(Level),
  },
  { description: "The top levels of the book, best first." },
);

export const route = defineRoute({
  name: "orderbook",
  version: "0.1.0",
  description:
    "Order book snapshots of one symbol. Subscribe with a symbol, a depth and a tick size; each update is a snapshot of the top levels.",
  tags: ["datafeed"],
  delivery: "latest-value",
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

// How slow clients are treated: each update is a whole snapshot, so a
// client that cannot keep up is sent the newest book instead of being
// disconnected (`delivery: "latest-value"` above).
export const delivery = deliveryOf(route);
