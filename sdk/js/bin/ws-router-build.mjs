#!/usr/bin/env node
// Build a JavaScript (or TypeScript) route into a plugin component, from
// the route's own folder:
//
//   npx ws-router-build route.js status.wasm
//
// ComponentizeJS takes one ES module and resolves only relative imports, so
// the route is first bundled with esbuild (which resolves `ws-router-sdk`
// and its TypeBox from node_modules, and strips TypeScript types); the
// bundle is then componentized against the `route-plugin` world of
// wit/ws-router.wit (shipped in the package; WS_ROUTER_WIT overrides it).
//
// The world exports one interface per optional feature, and ComponentizeJS
// needs a JS export for each. The bundle's entry re-exports the route's
// module and fills in what it leaves out from its `route` (defineRoute's
// result carries them all), so a route written before an interface existed
// (`export const { route, delivery } = ...`) still builds, with its own
// `authorize` and `retention` if it defines them.

import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";

const usage = "usage: ws-router-build <route.js|route.ts> <out.wasm>";
const [source, out, ...rest] = process.argv.slice(2);
if (!source || !out || rest.length > 0) fail(usage, 2);
if (!existsSync(source)) fail(`ws-router-build: ${source}: no such file\n${usage}`, 2);

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// A packed SDK carries its copy of the WIT; a checkout uses the repository's.
const wit = process.env.WS_ROUTER_WIT ?? [join(pkg, "wit"), join(pkg, "../../wit")].find((p) => existsSync(p));
if (!wit) fail(`ws-router-build: no WIT found next to ${pkg}; set WS_ROUTER_WIT to wit/ws-router.wit's folder`, 1);

const work = await mkdtemp(join(tmpdir(), "ws-router-build-"));
try {
  const bundled = join(work, "route.js");
  const entry = [
    `import * as app from ${JSON.stringify(resolve(source))};`,
    // A copy: reading a name the module does not export is the point here,
    // and esbuild warns about it on the namespace itself.
    `const exported = { ...app };`,
    `const plugin = exported.route?.[Symbol.for("ws-router-sdk.plugin")];`,
    `export const route = exported.route;`,
    `export const delivery = exported.delivery ?? plugin?.delivery;`,
    `export const authorize = exported.authorize ?? plugin?.authorize;`,
    `export const retention = exported.retention ?? plugin?.retention;`,
    `const missing = Object.entries({ route, delivery, authorize, retention }).filter(([, v]) => v === undefined).map(([k]) => k);`,
    `if (missing.length > 0) throw new Error(${JSON.stringify(`${source} does not export `)} + missing.join(", ") + ` +
      JSON.stringify(": export defineRoute's result (export const { route, delivery, authorize, retention } = defineRoute({...}))") +
      `);`,
  ].join("\n");
  try {
    await build({
      stdin: { contents: entry, resolveDir: dirname(resolve(source)), sourcefile: "ws-router-entry.js", loader: "js" },
      outfile: bundled,
      bundle: true,
      format: "esm",
      // The component has no Node.js: anything importing node:* fails here.
      platform: "neutral",
      mainFields: ["module", "main"],
      target: "es2022",
      logLevel: "warning",
    });
  } catch {
    // esbuild has printed the errors, with file and line.
    throw new Error(`cannot bundle ${source}`);
  }
  let component;
  try {
    ({ component } = await componentize({
      sourcePath: bundled,
      witPath: resolve(wit),
      worldName: "route-plugin",
      // The host grants WASI p2 without wasi:http: leave fetch out.
      disableFeatures: ["http", "fetch-event"],
    }));
  } catch (e) {
    throw new Error(`ComponentizeJS failed for ${source}: ${e?.message ?? e}`);
  }
  await writeFile(out, component);
  console.log(`${out}: ${component.length} bytes`);
} catch (e) {
  console.error(`ws-router-build: ${e.message}`);
  process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}

function fail(message, code) {
  console.error(message);
  process.exit(code);
}
