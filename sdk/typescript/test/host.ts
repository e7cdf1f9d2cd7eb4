// The real ws-router-host binary on a loopback port, with a temporary copy of
// the bundled plugins, always stopped again. `restart()` brings it back on
// the same port (the reconnect test).

import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const ROOT = path.resolve(PACKAGE, "../..");
export const HOST_BIN = process.env.WS_ROUTER_HOST_BIN || path.join(ROOT, "target/debug/ws-router-host");

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export interface Host {
  /** `127.0.0.1:PORT` */
  addr: string;
  /** `ws://127.0.0.1:PORT/api/v1/ws` */
  wsUrl: string;
  httpUrl: string;
  /** The host's plugins directory (delete a file to remove its route). */
  pluginsDir: string;
  logs: string[];
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Start again on the same port and plugins directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  subscribers(topic: string): Promise<number>;
  publish(body: unknown): Promise<unknown>;
}

/** A built plugin: plugins/<name>.wasm, or in $WS_ROUTER_PLUGINS (as the host reads it). */
export function pluginFile(name: string): string {
  const file = path.join(process.env.WS_ROUTER_PLUGINS || path.join(ROOT, "plugins"), `${name}.wasm`);
  if (!fs.existsSync(file)) throw new Error(`${file} is not built: run \`just build-plugins\``);
  return file;
}

export async function startHost({ plugins = ["bars", "quotes", "trades"], args = [] as string[] } = {}): Promise<Host> {
  if (!fs.existsSync(HOST_BIN)) throw new Error(`host binary ${HOST_BIN} is missing: run \`cargo build -p ws-router-host\``);
  const pluginsDir = fs.mkdtempSync(path.join(os.tmpdir(), "ws-router-ts-"));
  for (const name of plugins) fs.copyFileSync(pluginFile(name), path.join(pluginsDir, `${name}.wasm`));
  const logs: string[] = [];
  let child: ChildProcess | undefined;

  const launch = async (listen: string): Promise<string> => {
    const env: NodeJS.ProcessEnv = { ...process.env, RUST_LOG: "info" };
    delete env.WS_ROUTER_DEMO_FEED;
    const proc = spawn(HOST_BIN, ["--listen", listen, "--plugins", pluginsDir, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    running.add(proc);
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("host did not start within 60 s:\n" + logs.join("\n"))), 60_000);
      const onData = (chunk: Buffer) => {
        for (const line of chunk.toString().split("\n")) {
          if (!line) continue;
          logs.push(line);
          if (process.env.TEST_HOST_ECHO) console.error("[host]", line);
          const m = line.match(/listening on http:\/\/(\S+)/);
          if (m?.[1]) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        }
      };
      proc.stdout?.on("data", onData);
      proc.stderr?.on("data", onData);
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`host exited with ${code} before listening:\n` + logs.join("\n")));
      });
    });
  };

  const end = async (signal: NodeJS.Signals) => {
    const proc = child;
    child = undefined;
    if (!proc) return;
    running.delete(proc);
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };

  const addr = await launch("127.0.0.1:0");
  const httpUrl = `http://${addr}`;
  return {
    addr,
    wsUrl: `ws://${addr}/api/v1/ws`,
    httpUrl,
    pluginsDir,
    logs,
    kill: () => end("SIGKILL"),
    restart: async () => {
      await end("SIGKILL");
      // The port was just released; another process could take it, but on loopback in a test that is rare.
      await launch(addr);
    },
    stop: async () => {
      await end("SIGTERM");
      fs.rmSync(pluginsDir, { recursive: true, force: true });
    },
    subscribers: async (topic: string) => {
      const response = await fetch(`${httpUrl}/api/v1/subscribers?topic=${encodeURIComponent(topic)}`, { signal: AbortSignal.timeout(5000) });
      const body = (await response.json()) as { subscribers: number };
      return body.subscribers;
    },
    publish: async (body: unknown) => {
      const response = await fetch(`${httpUrl}/api/v1/publish`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`publish: HTTP ${response.status}: ${await response.text()}`);
      return response.json();
    },
  };
}

/** Resolve when `check()` is true, polling every 20 ms; fail after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
