import type { WsRouterClient } from "./client.js";
import type { ListenerOptions, UpdateInfo } from "./types.js";

/**
 * One route of a {@link WsRouterClient}, typed by its request and data: what a
 * generated `WsAdapter` has one of per route.
 */
export class RouteClient<Request, Data> {
  constructor(
    readonly client: WsRouterClient,
    readonly route: string,
  ) {}

  /**
   * Subscribe listener `listenerId` (your name for it, unique within this
   * route) to `request`; `onUpdate` receives each update's data. Resolves with
   * the topic once the host confirms, rejects with a `WsRouterError` carrying
   * the host's message and `errors` when it refuses. Subscribing an id again
   * replaces its subscription.
   */
  subscribe(
    listenerId: string,
    request: Request,
    onUpdate: (data: Data, info: UpdateInfo) => void,
    options?: ListenerOptions,
  ): Promise<string> {
    return this.client.subscribe(this.route, listenerId, request, onUpdate as (data: unknown, info: UpdateInfo) => void, options);
  }

  /** Remove the listener; the last listener of a topic unsubscribes on the host. */
  unsubscribe(listenerId: string): Promise<void> {
    return this.client.unsubscribe(this.route, listenerId);
  }
}
