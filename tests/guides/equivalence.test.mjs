// One route (`equiv`) written with each SDK (equivalence/rust, /python,
// /js) must be indistinguishable to clients: the same topics and keys, byte
// for byte, for a set of requests; the same verdict (accepted or refused)
// on a set of requests and published updates; and the same AsyncAPI
// section, up to how each language spells one schema (see `normalize`).
// Each version is built as a route author builds it and served by the
// real host.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect, hostBinary, pinnedToolchain, repo, scratch, sh, startHost } from "./lib.mjs";

const here = join(repo, "tests/guides/equivalence");
const venv = join(repo, ".venv");

const builds = {
  rust: async (out) => {
    await sh(`cargo build --release --target wasm32-wasip2 && cp "$CARGO_TARGET_DIR/wasm32-wasip2/release/equiv.wasm" "${out}"`, {
      cwd: join(here, "rust"),
      env: { RUSTUP_TOOLCHAIN: pinnedToolchain, CARGO_TARGET_DIR: join(repo, "target/guides") },
    });
  },
  python: async (out) => {
    // The repository's venv has the SDK installed (`just python-venv`).
    await sh(`"$VIRTUAL_ENV/bin/componentize-py" -d ../../../../wit -w route-plugin componentize app -o "${out}"`, {
      cwd: join(here, "python"),
      env: { VIRTUAL_ENV: venv },
    });
  },
  js: async (out) => {
    await sh(`{ [ -e node_modules/ws-router-sdk ] || npm ci --no-audit --no-fund; } && npx --no-install ws-router-build route.js "${out}"`, {
      cwd: join(here, "js"),
    });
  },
};

const requests = [
  { symbols: ["AAPL"] },
  { symbols: ["MSFT", "AAPL", "MSFT"], depth: 10, tick: 1 },
  { tick: 0.5, symbols: ["Ünïcødé 株"], venue: "XNAS", extra: { ignored: true } },
  { symbols: ["AAPL"], tick: 2.0, venue: null },
  { symbols: ["AAPL"], tick: 1e-7, depth: -3 },
  { symbols: [] },
  { symbols: "AAPL" },
  { depth: 5 },
  { symbols: ["AAPL"], depth: 1.5 },
  { symbols: ["AAPL"], tick: "1" },
  { symbols: ["AAPL"], venue: 7 },
];

const updates = [
  { symbol: "AAPL", price: 1, side: "buy", time: 1 },
  { symbol: "AAPL", price: 187.25, side: "sell", time: 1700000000000, extra: 1 },
  { symbol: "AAPL", price: 1, side: "hold", time: 1 },
  { symbol: "AAPL", price: "1", side: "buy", time: 1 },
  { symbol: "AAPL", price: 1, side: "buy", time: 1.5 },
  { symbol: "AAPL", price: 1, side: "buy" },
];

/** What clients see of one version of the route. */
async function observe(wasm) {
  const host = await startHost([wasm], "equiv");
  try {
    const client = await connect(host.base);
    const replies = [];
    for (const payload of requests) {
      client.send({ type: "equiv.subscribe", payload });
      const reply = await client.recv();
      assert.equal(reply.type, "equiv.subscribe.response");
      // Accepted: the reply as a whole (topic and keys byte for byte). Refused
      // by the schema: which paths were wrong (the validator words a message
      // after the schema's spelling); refused by the route: its message.
      const p = reply.payload;
      replies.push(
        p.status === "ok" ? p : p.errors ? { status: p.status, paths: p.errors.map((e) => e.path).sort() } : { status: p.status, message: p.message },
      );
    }
    const published = [];
    for (const data of updates) {
      const reply = await host.publish({ route: "equiv", request: { symbols: ["AAPL"] }, data });
      published.push(reply.results.map((r) => r.status));
    }
    const routes = await host.getJson("/api/v1/routes");
    const info = routes.find((r) => r.name === "equiv");
    client.close();
    const asyncapi = JSON.parse(await sh(`"${hostBinary}" asyncapi --plugins "${host.plugins}"`));
    return {
      replies,
      published,
      delivery: info.delivery,
      retention: info.retention,
      version: info.version,
      tags: info.tags,
      asyncapi: section(asyncapi),
    };
  } catch (e) {
    e.message += `\n--- host log\n${host.log}`;
    throw e;
  } finally {
    await host.stop();
  }
}

/** Everything of the AsyncAPI document that concerns the `equiv` route. */
function section(doc) {
  const picked = {};
  const walk = (value, path) => {
    if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        // Named types (Rust's `$defs`, hoisted by the host) are compared
        // where they are used: `normalize` inlines them.
        const hoisted = path === "/components/schemas" && !/^equiv\.(request|data)$/.test(k);
        if (/equiv/i.test(k)) {
          if (!hoisted) picked[`${path}/${k}`] = v;
        }
        else walk(v, `${path}/${k}`);
      }
    }
  };
  walk(doc, "");
  return normalize(picked, doc);
}

/**
 * One spelling per schema: `$ref`s inlined; `title` (Rust names the type),
 * `format` (Rust's int64/double) and `$schema` dropped; `type: [T, "null"]`
 * as `anyOf`; `type: "string"` beside a string `enum` dropped; `required`
 * sorted. Numbers compare as numbers (1 and 1.0 alike).
 */
function normalize(value, root, depth = 0) {
  if (depth > 64) throw new Error("schema nests too deep (a $ref cycle?)");
  if (Array.isArray(value)) return value.map((v) => normalize(v, root, depth + 1));
  if (!value || typeof value !== "object") return value;
  if (typeof value.$ref === "string" && value.$ref.startsWith("#/")) {
    let target = root;
    for (const part of value.$ref.slice(2).split("/")) target = target?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
    const { $ref: _, ...rest } = value;
    return normalize({ ...target, ...rest }, root, depth + 1);
  }
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "title" || k === "format" || k === "$schema" || k === "$defs") continue;
    out[k] = k === "default" || k === "examples" || k === "enum" || k === "const" ? v : normalize(v, root, depth + 1);
  }
  if (Array.isArray(out.type) && out.type.length > 1) {
    out.anyOf = out.type.map((t) => ({ type: t }));
    delete out.type;
  }
  if (Array.isArray(out.enum) && out.enum.every((e) => typeof e === "string") && out.type === "string") delete out.type;
  if (Array.isArray(out.required)) out.required = [...out.required].sort();
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

test("one route in Rust, Python and JavaScript: same topics, same verdicts, same AsyncAPI section", { timeout: 1_200_000 }, async () => {
  const out = scratch("equiv");
  const seen = {};
  for (const [lang, build] of Object.entries(builds)) {
    const wasm = join(out, `equiv-${lang}.wasm`);
    await build(wasm);
    seen[lang] = await observe(wasm);
  }
  // The Rust route is the reference; the replies are compared whole (topic
  // and keys byte for byte, error messages too).
  const ok = seen.rust.replies.filter((r) => r.status === "ok");
  assert.ok(ok.length >= 5 && ok.some((r) => r.topic.includes('"tick":1.0')), JSON.stringify(seen.rust.replies));
  assert.ok(seen.rust.published.flat().includes("error") && seen.rust.published.flat().includes("ok"));
  assert.deepEqual(seen.rust.retention, { snapshot: true, history_size: 0, history_ttl_ms: 0 });
  for (const lang of ["python", "js"]) {
    assert.deepEqual(seen[lang].replies, seen.rust.replies, `${lang}: subscribe replies`);
    assert.deepEqual(seen[lang].published, seen.rust.published, `${lang}: publish verdicts`);
    assert.deepEqual(
      [seen[lang].delivery, seen[lang].retention, seen[lang].version, seen[lang].tags],
      [seen.rust.delivery, seen.rust.retention, seen.rust.version, seen.rust.tags],
      `${lang}: route info`,
    );
    assert.deepEqual(seen[lang].asyncapi, seen.rust.asyncapi, `${lang}: AsyncAPI section`);
  }
});
