// Compile-time checks of the generated adapter's types (built with the
// tests: the build fails if an expected error goes away). Nothing runs.
import { WsRouterClient } from "ws-router-client";
import { createWsAdapter, ROUTES, type Bar, type BarsSubscriptionRequest, type WsAdapter } from "ws-router-client/generated";

export function typing(client: WsRouterClient): void {
  const adapter: WsAdapter = createWsAdapter(client);
  const request: BarsSubscriptionRequest = { symbol: "AAPL" };
  void adapter.bars.subscribe("ok", request, (bar: Bar) => bar.close.toFixed(2));
  // @ts-expect-error: symbol is a string
  void adapter.bars.subscribe("x", { symbol: 5 }, () => {});
  // @ts-expect-error: symbol is required
  void adapter.bars.subscribe("x", { resolution: "1" }, () => {});
  // @ts-expect-error: unknown field
  void adapter.bars.subscribe("x", { symbol: "AAPL", resolutoin: "1" }, () => {});
  // @ts-expect-error: a quotes request is not a bars request
  void adapter.bars.subscribe("x", { symbols: ["AAPL"] }, () => {});
  // @ts-expect-error: a bar has no `price`
  void adapter.bars.subscribe("x", request, (bar) => bar.price);
  // @ts-expect-error: no such route
  void adapter.nosuch;
  const routes: readonly string[] = ROUTES;
  void routes;
}
