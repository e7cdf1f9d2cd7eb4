// Build a JavaScript route into a plugin component:
//   node sdk/js/build.mjs plugins/orderbook/index.js plugins/orderbook.wasm
// Run from the repository root: ComponentizeJS maps the current directory
// into the build, so the route can import ../../sdk/js/ws-router.js.
//
// The ComponentizeJS API is used directly: `jco componentize` (jco 1.35)
// fails on a relative --wit path on these machines.

import { writeFile } from "node:fs/promises";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { componentize } from "@bytecodealliance/componentize-js";

const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: node sdk/js/build.mjs <route.js> <out.wasm>");
  process.exit(2);
}
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(process.env.WS_ROUTER_WIT ?? `${root}/wit`),
  worldName: "route-plugin",
  // The host grants WASI p2 without wasi:http: leave fetch out.
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
console.log(`${out}: ${component.length} bytes`);
