/**
 * ws-router-client: a typed WebSocket client for ws-router hosts.
 *
 * - `client.ts`: {@link WsRouterClient}, the one socket every route shares:
 *   commands and replies, shared subscriptions, reconnects and recovery.
 * - `route.ts`: {@link RouteClient}, one route's typed view (generated
 *   adapters have one per route).
 * - `errors.ts`: {@link WsRouterError}, why a subscription failed or ended.
 * - `types.ts`: options, events and the WebSocket shape the client needs.
 */
export { WsRouterClient } from "./client.js";
export { RouteClient } from "./route.js";
export { WsRouterError, type ErrorCode, type Problem } from "./errors.js";
export type {
  ClientEvents,
  ClientOptions,
  ConnectionState,
  ListenerOptions,
  ReconnectOptions,
  ResubscribeInfo,
  RouteVersion,
  UpdateInfo,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
