// Compile-time checks of the SDK's types (`tsc -p test/tsconfig.json`,
// part of `npm test`): what an editor shows a route author.

import { defineRoute, Type, type Static } from "ws-router-sdk";

const Request = Type.Object({
  symbol: Type.String(),
  depth: Type.Integer({ default: 10 }),
  venue: Type.Optional(Type.String()),
});

type Expect<T extends true> = T;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

export const { route } = defineRoute({
  name: "typed",
  request: Request,
  data: Type.Object({ time: Type.Integer() }),
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

// @ts-expect-error: unknown delivery policy
defineRoute({ name: "bad", request: Request, data: Type.Object({}), delivery: "latest" });
