// The docs page in a real headless Chromium (Debian's, driven by
// playwright-core; no browser is downloaded): it loads without console
// errors, lists the routes, and its console shows live demo-feed updates.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { ROOT, startHost } from "./host.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ARTIFACTS = path.join(ROOT, "target/test-artifacts");

let host;
let context;
let profile;
before(async () => {
  host = await startHost({ args: ["--demo-feed", "--demo-rate", "10"] });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "ws-router-chromium-"));
  // A fresh profile per run (playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 1000 },
    // Chromium's own sandbox needs user namespaces, which CI (root in a
    // container) does not have; the page is our own.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});
after(async () => {
  if (context) await context.close();
  if (host) await host.stop();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test("docs page lists the routes and its console streams live bars updates", async () => {
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const outside = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (!["data:"].includes(url.protocol) && url.host !== host.addr) outside.push(r.url());
  });

  const response = await page.goto(`${host.url}/api/v1/ws/asyncapi`);
  assert.equal(response.status(), 200);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });

  // Every route, with its description, tags, schema tables and examples.
  const routes = await page.$$eval("section.route", (els) => els.map((e) => e.dataset.route));
  for (const route of ["bars", "quotes", "trades"]) assert.ok(routes.includes(route), `route ${route} listed; got ${routes}`);
  const bars = page.locator("#route-bars");
  assert.match(await bars.innerText(), /OHLCV bars/);
  assert.ok(await bars.locator(".tag", { hasText: "datafeed" }).count());
  assert.ok(await bars.locator('tr[data-field="symbol"]').count(), "request table has symbol");
  assert.ok(await bars.locator('tr[data-field="close"]').count(), "data table has close");
  assert.ok(await page.locator('#route-quotes tr[data-field="v.lp"]').count(), "nested quote values are listed");
  assert.match(await bars.locator("pre.frame").first().innerText(), /"type":"bars.subscribe"/);

  // The console: pick bars, the request is prefilled from the schema, subscribe.
  await page.selectOption("#route-select", "bars");
  const request = JSON.parse(await page.inputValue("#request"));
  assert.deepEqual(request, { symbol: "AAPL", resolution: "1" });
  await page.click("#connect");
  await page.waitForSelector('#conn-state[data-state="open"]', { timeout: 10000 });
  await page.click("#subscribe");
  const topic = 'bars:{"resolution":"1","symbol":"AAPL"}';
  await page.waitForSelector(`#subscriptions li[data-topic='${topic}']`, { timeout: 10000 });
  // A live update from the demo feed arrives and is shown.
  await page.waitForFunction(
    (t) => {
      const li = [...document.querySelectorAll("#subscriptions li")].find((e) => e.dataset.topic === t);
      return li && Number(li.querySelector(".count").dataset.updates) >= 2;
    },
    topic,
    { timeout: 15000 },
  );
  const latest = await page.innerText("#latest-update");
  assert.match(latest, /bars\.update/);
  assert.match(latest, /"close"/);

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, "docs-page.png"), fullPage: false });

  // Unsubscribe ends it.
  await page.click("#unsubscribe");
  await page.waitForSelector("#subscriptions li.muted", { timeout: 10000 });
  assert.match(await page.innerText("#log"), /bars\.unsubscribe\.response/);

  assert.deepEqual(problems, [], "no console errors");
  assert.deepEqual(outside, [], "no request leaves the host");
});
