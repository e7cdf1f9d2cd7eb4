// The generated types reject wrong requests, and the generator can target
// one module (tag).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { PACKAGE } from "./host.js";

const TSC = path.join(PACKAGE, "node_modules/.bin/tsc");

function tsc(...args: string[]) {
  const run = spawnSync(TSC, args, { cwd: PACKAGE, encoding: "utf8", timeout: 120_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

test("a wrong request type for adapter.bars.subscribe does not compile", () => {
  const { status, output } = tsc("-p", "test/negative/tsconfig.json");
  assert.notEqual(status, 0, `tsc accepted test/negative/wrong-request.ts:\n${output}`);
  assert.match(output, /wrong-request\.ts\(8,\d+\): error TS2322: Type 'number' is not assignable to type 'string'/);
  assert.equal(output.match(/error TS/g)?.length, 1, `exactly the one expected error:\n${output}`);
});

test("the generator targets one module: --tag datafeed", () => {
  const out = path.join(PACKAGE, "dist/test-gen/datafeed");
  fs.rmSync(out, { recursive: true, force: true });
  const run = spawnSync(process.execPath, ["codegen/generate.mjs", "--tag", "datafeed", "--out", out], {
    cwd: PACKAGE,
    encoding: "utf8",
    timeout: 180_000,
  });
  assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  const index = fs.readFileSync(path.join(out, "index.ts"), "utf8");
  assert.match(index, /export const ROUTES = \["bars", "orderbook", "quotes"\] as const;/);
  assert.match(index, /export const WS_PATH = "\/api\/v1\/datafeed\/ws";/);
  assert.match(index, /readonly bars: RouteClient<BarsSubscriptionRequest, Bar>;/);
  assert.doesNotMatch(index, /trades|news/);
  const types = fs.readFileSync(path.join(out, "types.ts"), "utf8");
  assert.match(types, /export interface QuoteData\b/);
  assert.doesNotMatch(types, /TradeSubscriptionRequest/);
  fs.writeFileSync(
    path.join(out, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", lib: ["es2022", "dom"], types: [] },
      files: ["index.ts"],
    }),
  );
  const check = tsc("-p", path.join(out, "tsconfig.json"));
  assert.equal(check.status, 0, check.output);
});
