// The `equiv` route in JavaScript; ../rust and ../python are the same route
// in the other SDKs.

import { defineRoute, InvalidRequest, Type } from "ws-router-sdk";

const EquivRequest = Type.Object(
  {
    symbols: Type.Array(Type.String(), { description: "Ticker symbols, at least one." }),
    depth: Type.Integer({ description: "Levels per side.", default: 5 }),
    tick: Type.Number({ description: "Price bucket.", default: 1.0 }),
    venue: Type.Union([Type.String(), Type.Null()], { description: "Venue code; null for every venue.", default: null }),
  },
  { description: "Ticks of one or more symbols." },
);

const Tick = Type.Object(
  {
    symbol: Type.String({ description: "Ticker symbol." }),
    price: Type.Number(),
    side: Type.Unsafe({ type: "string", enum: ["buy", "sell"], description: "Which side initiated the trade." }),
    time: Type.Integer({ description: "Unix milliseconds." }),
  },
  { description: "One tick." },
);

export const { route, delivery, retention } = defineRoute({
  name: "equiv",
  version: "0.1.0",
  description: "One route, written in Rust, Python and JavaScript: the three must be indistinguishable.",
  tags: ["test"],
  delivery: "latest-value",
  // Snapshot only: a history would put per-run epochs in the replies compared.
  retention: { snapshot: true },
  request: EquivRequest,
  data: Tick,
  keys(request) {
    if (request.symbols.length === 0) throw new InvalidRequest("at least one symbol is required");
    return [...new Set(request.symbols.map((s) => `equiv:${s}`))].sort();
  },
});
