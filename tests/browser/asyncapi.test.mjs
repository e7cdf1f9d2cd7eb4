// The AsyncAPI document the real host serves must pass the official parser
// (@asyncapi/parser) with no error; warnings are printed.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";
import { startHost } from "./host.mjs";

let host;
before(async () => {
  // ticker's $defs reuse quotes' names with other contents.
  host = await startHost({ plugins: ["bars", "quotes", "trades", "ticker"] });
});
after(async () => {
  if (host) await host.stop();
});

/** Fetch the served document and parse it; fails on any parser error. */
async function parseServed(url) {
  const response = await fetch(`${url}/api/v1/ws/asyncapi.json`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /application\/json/);
  const text = await response.text();

  const { document, diagnostics } = await new Parser().parse(text);
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    if (d.severity !== DiagnosticSeverity.Error) {
      console.log(`asyncapi parser ${d.severity === DiagnosticSeverity.Warning ? "warning" : "note"}: ${d.code}: ${d.message} at /${d.path.join("/")}`);
    }
  }
  assert.deepEqual(
    errors.map((d) => `${d.code}: ${d.message} at /${d.path.join("/")}`),
    [],
    "the parser reported errors",
  );
  assert.ok(document, "the parser produced a document");
  return { document, text };
}

test("served AsyncAPI document passes @asyncapi/parser with zero errors", async () => {
  const { document, text } = await parseServed(host.url);

  // What a client generator sees through the parser's model.
  assert.equal(document.version(), "3.0.0");
  const operations = document.operations().all().map((o) => o.id()).sort();
  for (const route of ["bars", "quotes", "trades", "ticker"]) {
    for (const op of ["subscribe", "unsubscribe", "update"]) assert.ok(operations.includes(`${route}.${op}`), `${route}.${op}`);
  }
  for (const frame of ["error", "route.removed", "routes.changed"]) assert.ok(operations.includes(frame), frame);
  const subscribe = document.operations().get("bars.subscribe");
  assert.ok(subscribe.isReceive());
  assert.equal(subscribe.reply().messages().all()[0].id(), "bars.subscribe.response");
  assert.ok(document.operations().get("bars.update").isSend());

  // Colliding $defs names stay two types.
  const schemas = JSON.parse(text).components.schemas;
  assert.deepEqual(schemas["quotes.QuoteStatus"].enum, ["ok", "error"]);
  assert.deepEqual(schemas["ticker.QuoteStatus"].enum, ["open", "halted"]);
  assert.ok("lp" in schemas["quotes.QuoteValues"].properties);
  assert.deepEqual(Object.keys(schemas["ticker.QuoteValues"].properties), ["last"]);
  const quoteStatus = document.components().schemas().get("ticker.data").properties().status;
  assert.deepEqual(quoteStatus.allOf()?.[0]?.enum() ?? quoteStatus.enum(), ["open", "halted"]);
});

test("document of a host with no routes is valid too", async () => {
  const empty = await startHost({ plugins: [] });
  try {
    const { document } = await parseServed(empty.url);
    const operations = document.operations().all().map((o) => o.id()).sort();
    assert.deepEqual(operations, ["error", "route.removed", "routes.changed"]);
  } finally {
    await empty.stop();
  }
});
