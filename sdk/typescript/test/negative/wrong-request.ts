// Must NOT compile: test/types.test.ts runs tsc on this file and expects the
// error below. A bars request's `symbol` is a string.
import { WebSocket } from "ws";
import { WsRouterClient } from "ws-router-client";
import { createWsAdapter } from "ws-router-client/generated";

const adapter = createWsAdapter(new WsRouterClient({ url: "ws://127.0.0.1:8000/api/v1/ws", WebSocket }));
void adapter.bars.subscribe("chart-1", { symbol: 5, resolution: "1" }, (bar) => console.log(bar.close));
