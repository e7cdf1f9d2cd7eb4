/** One schema violation the host found in a request. */
export interface Problem {
  /** JSON pointer to the offending value (`""` is the whole request). */
  path: string;
  message: string;
}

/**
 * Why a subscription failed or ended:
 * - `rejected`: the host answered with `status: "error"` (`message` and
 *   `errors` are the host's);
 * - `timeout`: the host did not answer within `requestTimeoutMs`;
 * - `cancelled`: `unsubscribe` (or a new `subscribe` with the same listener
 *   id) came before the host confirmed;
 * - `route_removed`: the host removed the route (hot reload);
 * - `disconnected`: the connection was lost and reconnecting is off;
 * - `closed`: `close()` was called.
 */
export type ErrorCode = "rejected" | "timeout" | "cancelled" | "route_removed" | "disconnected" | "closed";

export class WsRouterError extends Error {
  override readonly name = "WsRouterError";
  readonly code: ErrorCode;
  /** The route the failed command or subscription belongs to, if any. */
  readonly route: string | undefined;
  /** One entry per schema violation, when the host listed them. */
  readonly errors: readonly Problem[];

  constructor(code: ErrorCode, message: string, options: { route?: string; errors?: readonly Problem[] } = {}) {
    super(message);
    this.code = code;
    this.route = options.route;
    this.errors = options.errors ?? [];
  }
}
