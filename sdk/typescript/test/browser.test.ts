// The package in a real page: Debian's headless Chromium (driven by
// playwright-core, no browser downloaded) loads the built ES modules from a
// small static server, connects to the host with the browser's own
// WebSocket, and receives a demo-feed update through the generated adapter.

import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium, type BrowserContext } from "playwright-core";
import { PACKAGE, startHost, type Host } from "./host.js";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>ws-router-client</title><link rel="icon" href="data:,">
<script type="importmap">
{"imports": {"ws-router-client": "/dist/src/index.js", "ws-router-client/generated": "/dist/generated/index.js"}}
</script>
<script type="module">
import { WsRouterClient } from "ws-router-client";
import { createWsAdapter, WS_PATH } from "ws-router-client/generated";
window.result = { states: [], updates: [] };
try {
  const client = new WsRouterClient({ url: "ws://" + new URLSearchParams(location.search).get("host") + WS_PATH });
  client.on("state", (s) => window.result.states.push(s));
  const adapter = createWsAdapter(client);
  window.result.topic = await adapter.bars.subscribe("chart-1", { symbol: "AAPL", resolution: "1" }, (bar) => window.result.updates.push(bar));
} catch (e) {
  window.result.failure = String(e && e.stack || e);
}
</script></head><body></body></html>`;

/** Serves the page and the package's built JavaScript; nothing else. */
function serve(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
      return;
    }
    const file = path.resolve(PACKAGE, "." + url.pathname);
    const allowed = [path.join(PACKAGE, "dist/src") + path.sep, path.join(PACKAGE, "dist/generated") + path.sep];
    if (!allowed.some((dir) => file.startsWith(dir)) || !file.endsWith(".js") || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/javascript" }).end(fs.readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

let host: Host;
let server: http.Server;
let context: BrowserContext;
let profile: string;
before(async () => {
  // The page comes from another origin than the host's: a front end served
  // by its own web server, which the host must list in --allowed-origins.
  server = await serve();
  const { port } = server.address() as AddressInfo;
  host = await startHost({ args: ["--demo-feed", "--demo-rate", "10", "--allowed-origins", `http://127.0.0.1:${port}`] });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "ws-router-ts-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // Chromium's own sandbox needs user namespaces, which CI (root in a container) lacks.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-sync"],
  });
});
after(async () => {
  await context?.close();
  server?.close();
  await host?.stop();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test("in Chromium, the generated adapter subscribes and receives an update", async () => {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const { port } = server.address() as AddressInfo;
  await page.goto(`http://127.0.0.1:${port}/?host=${host.addr}`);
  await page.waitForFunction(
    () => {
      const r = (window as unknown as { result?: { failure?: string; updates: unknown[] } }).result;
      return r && (r.failure || r.updates.length >= 1);
    },
    undefined,
    { timeout: 15_000 },
  );
  const result = await page.evaluate(
    () => (window as unknown as { result: { failure?: string; topic?: string; states: string[]; updates: Array<{ close: number }> } }).result,
  );
  assert.equal(result.failure, undefined);
  assert.equal(result.topic, 'bars:{"resolution":"1","symbol":"AAPL"}');
  assert.equal(typeof result.updates[0]?.close, "number");
  assert.deepEqual(result.states, ["connecting", "open"]);
  assert.deepEqual(problems, []);
});
