// Compile-time checks of the SDK's types (`tsc -p test/tsconfig.json`,
// part of `npm test`): what an editor shows a route author.

import { defineRoute, Forbidden, Type, type Claims, type Static } from "ws-router-sdk";

const Request = Type.Object({
  symbol: Type.String(),
  depth: Type.Integer({ default: 10 }),
  venue: Type.Optional(Type.String()),
});

type Expect<T extends true> = T;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

export const { route, delivery, authorize } = defineRoute({
  name: "typed",
  request: Request,
  data: Type.Object({ time: Type.Integer() }),
  authorize(claims, request) {
    // Claims are null without authentication; the request is typed.
    type _c = Expect<Equal<typeof claims, Claims | null>>;
    type _r = Expect<Equal<typeof request, Static<typeof Request>>>;
    // @ts-expect-error: claims may be null
    claims.sub;
    // @ts-expect-error: a claim's shape is not known: test it first
    claims?.accounts?.includes(request.symbol);
    const accounts = claims?.["accounts"];
    if (Array.isArray(accounts) && !accounts.includes(request.symbol)) throw new Forbidden("not yours");
  },
  keys(request, topic) {
    // The request is inferred from the schema.
    type _ = Expect<Equal<typeof request, Static<typeof Request>>>;
    const depth: number = request.depth;
    const symbol: string = request.symbol;
    // @ts-expect-error: no such property
    request.nosuch;
    // @ts-expect-error: optional, may be undefined
    const venue: string = request.venue;
    return [`${topic}:${symbol}:${depth}:${venue}`];
  },
});

defineRoute({
  name: "bad",
  request: Request,
  data: Type.Object({}),
  // @ts-expect-error: keys must return strings
  keys: () => [1],
});

defineRoute({
  name: "kept",
  request: Request,
  data: Type.Object({}),
  retention: { snapshot: true, historySize: 500, historyTtlMs: 600_000 },
});

// @ts-expect-error: retention's fields are named in camelCase
defineRoute({ name: "bad", request: Request, data: Type.Object({}), retention: { history_size: 5 } });

// @ts-expect-error: unknown delivery policy
defineRoute({ name: "bad", request: Request, data: Type.Object({}), delivery: "latest" });

defineRoute({
  name: "bad",
  request: Request,
  data: Type.Object({}),
  // @ts-expect-error: authorize takes the claims and the request
  authorize: (claims: string) => claims,
});
