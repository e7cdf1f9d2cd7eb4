// Start the real ws-router-host binary on 127.0.0.1:0 with a temporary
// plugins directory, and always stop it again.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const HOST_BIN = process.env.WS_ROUTER_HOST_BIN || path.join(ROOT, "target/debug/ws-router-host");

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A built plugin by name: plugins/<name>.wasm or target/test-plugins/<name>.wasm. */
export function pluginFile(name) {
  for (const dir of ["plugins", "target/test-plugins"]) {
    const file = path.join(ROOT, dir, `${name}.wasm`);
    if (fs.existsSync(file)) return file;
  }
  throw new Error(`plugin ${name}.wasm is not built: run \`just build-plugins build-test-plugins\``);
}

/**
 * Start the host with `plugins` (names) and extra `args`; resolves to
 * {url, addr, logs, stop()} once it listens.
 */
export async function startHost({ plugins = ["bars", "quotes", "trades"], args = [] } = {}) {
  if (!fs.existsSync(HOST_BIN)) throw new Error(`host binary ${HOST_BIN} is missing: run \`cargo build -p ws-router-host\``);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ws-router-browser-"));
  for (const name of plugins) fs.copyFileSync(pluginFile(name), path.join(dir, `${name}.wasm`));
  const env = { ...process.env, RUST_LOG: "info" };
  delete env.WS_ROUTER_DEMO_FEED;
  const child = spawn(HOST_BIN, ["--listen", "127.0.0.1:0", "--plugins", dir, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const logs = [];
  const stop = async () => {
    running.delete(child);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("host did not start within 60 s:\n" + logs.join("\n"))), 60000);
    const onData = (chunk) => {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        logs.push(line);
        if (process.env.TEST_HOST_ECHO) console.error("[host]", line);
        const m = line.match(/listening on http:\/\/(\S+)/);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`host exited with ${code} before listening:\n` + logs.join("\n")));
    });
  }).catch(async (e) => {
    await stop();
    throw e;
  });
  return { addr, url: `http://${addr}`, logs, stop };
}
