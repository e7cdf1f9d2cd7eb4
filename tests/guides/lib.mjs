// Helpers of the guide and SDK-equivalence tests: the real host binary on a
// loopback port, a real WebSocket client, shell steps with bounded time.
// Run with `node --test --experimental-websocket` (Node 20; global in 22).

import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The host binary: WS_ROUTER_HOST, else the debug build. */
export const hostBinary = process.env.WS_ROUTER_HOST ?? join(repo, "target/debug/ws-router-host");

/** A fresh directory outside the repository. */
export const scratch = (name) => mkdtempSync(join(tmpdir(), `ws-router-${name}-`));

/** The toolchain rust-toolchain.toml pins (it has the wasm32-wasip2 target). */
export const pinnedToolchain = /channel\s*=\s*"([^"]+)"/.exec(readFileSync(join(repo, "rust-toolchain.toml"), "utf8"))?.[1];

/** Run a bash script (`set -euo pipefail`); rejects on failure or after `timeoutMs`. */
export function sh(script, { cwd, env = {}, timeoutMs = 600_000 } = {}) {
  return new Promise((ok, fail) => {
    const child = spawn("bash", ["-euo", "pipefail", "-c", script], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) ok(out);
      else fail(new Error(`script failed (${signal ?? `exit ${code}`}):\n${script}\n--- stdout\n${out}\n--- stderr\n${err}`));
    });
  });
}

async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

async function within(ms, what, poll) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await poll().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The host serving the given plugin files (copied into a fresh plugins
 * folder), once `route` is loaded. `await using`-free: call `stop()`.
 */
export async function startHost(wasmFiles, route) {
  const plugins = scratch("plugins");
  for (const f of wasmFiles) copyFileSync(f, join(plugins, basename(f)));
  const port = await freePort();
  const base = `127.0.0.1:${port}`;
  let log = "";
  const child = spawn(hostBinary, ["--listen", base, "--plugins", plugins, "--no-demo-feed"], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const exited = new Promise((r) => child.on("exit", r));
  const host = {
    base,
    plugins,
    get log() {
      return log;
    },
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
    async getJson(path) {
      const res = await fetch(`http://${base}${path}`, { signal: AbortSignal.timeout(10_000) });
      return res.json();
    },
    async publish(body) {
      const res = await fetch(`http://${base}/api/v1/publish`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      return res.json();
    },
  };
  try {
    // A Python or JavaScript component takes the host seconds to compile.
    await within(90_000, `route ${route} to load`, async () => {
      if (child.exitCode !== null) throw new Error("exited");
      const routes = await host.getJson("/api/v1/routes");
      return routes.some((r) => r.name === route) ? true : undefined;
    });
  } catch (e) {
    await host.stop();
    throw new Error(`${e.message}\n--- host log\n${log}`);
  }
  return host;
}

/** A WebSocket client whose `recv` waits at most `ms` for the next frame. */
export async function connect(base) {
  const ws = new WebSocket(`ws://${base}/api/v1/ws`);
  const frames = [];
  const waiters = [];
  ws.addEventListener("message", (e) => {
    const frame = JSON.parse(e.data);
    const waiter = waiters.shift();
    if (waiter) waiter(frame);
    else frames.push(frame);
  });
  await new Promise((ok, fail) => {
    ws.addEventListener("open", ok, { once: true });
    ws.addEventListener("error", () => fail(new Error(`cannot connect to ws://${base}`)), { once: true });
  });
  return {
    send: (frame) => ws.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
    recv(ms = 10_000) {
      if (frames.length > 0) return Promise.resolve(frames.shift());
      return new Promise((ok, fail) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          fail(new Error(`no frame within ${ms} ms`));
        }, ms);
        const waiter = (frame) => {
          clearTimeout(timer);
          ok(frame);
        };
        waiters.push(waiter);
      });
    },
    close: () => ws.close(),
  };
}

/** The fenced code blocks of a markdown file: info string words and body. */
export function codeBlocks(markdown) {
  const blocks = [];
  const fence = /^```([^\n]*)\n([\s\S]*?)^```$/gm;
  for (const m of markdown.matchAll(fence)) {
    const [lang = "", ...words] = m[1].trim().split(/\s+/);
    const attrs = Object.fromEntries(words.map((w) => (w.includes("=") ? w.split(/=(.*)/s).slice(0, 2) : [w, true])));
    blocks.push({ lang, attrs, body: m[2] });
  }
  return blocks;
}
