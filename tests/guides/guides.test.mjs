// Each route-writing guide (docs/write-a-route-*.md), followed from an empty
// folder outside the repository, as its code blocks say: blocks tagged
// `build` run in order (one shell, so `cd` carries over), `file=<path>`
// blocks are written where the guide has got to; then the `.wasm` the
// guide copies into `$WSR/plugins/` is served by the real host, and the
// `session` blocks are played over a real WebSocket (`>` sent, `<` expected)
// around the `publish` blocks, which run with the host's address.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, isAbsolute } from "node:path";
import { codeBlocks, connect, pinnedToolchain, repo, scratch, sh, startHost } from "./lib.mjs";

const heredoc = (path, body) => `mkdir -p "$(dirname '${path}')"\ncat > '${path}' <<'WS_ROUTER_GUIDE_EOF'\n${body}WS_ROUTER_GUIDE_EOF\n`;

async function followGuide(name) {
  const guide = `docs/write-a-route-${name}.md`;
  const blocks = codeBlocks(readFileSync(join(repo, guide), "utf8"));
  const steps = blocks.filter((b) => b.attrs.build || b.attrs.file);
  assert.ok(steps.some((b) => b.attrs.build) && steps.some((b) => b.attrs.file), `${guide}: no build or file blocks`);
  const script = steps.map((b) => (b.attrs.build ? b.body : heredoc(b.attrs.file, b.body))).join("\n");
  // Where the guide ends up (it `cd`s into the route's folder).
  const done = `${script}\npwd > "$GUIDE_RESULT"\n`;

  const work = scratch(`guide-${name}`);
  const result = join(work, ".result");
  await sh(done, {
    cwd: work,
    env: {
      WSR: repo,
      GUIDE_RESULT: result,
      // The pinned toolchain has the wasm32-wasip2 target without a download.
      RUSTUP_TOOLCHAIN: pinnedToolchain,
      // Dependencies compiled once, not on every run (the guide's own
      // `target/` paths are mapped below).
      CARGO_TARGET_DIR: join(repo, "target/guides"),
      npm_config_audit: "false",
      npm_config_fund: "false",
    },
    timeoutMs: 900_000,
  });
  const folder = readFileSync(result, "utf8").trim();

  // `cp <plugin>.wasm $WSR/plugins/`: the plugin the guide built.
  const copy = blocks.map((b) => /^cp (\S+\.wasm) \$WSR\/plugins\/$/m.exec(b.body)).find(Boolean);
  assert.ok(copy, `${guide}: no "cp <plugin>.wasm $WSR/plugins/" line`);
  const built = copy[1].startsWith("target/") ? join(repo, "target/guides", copy[1].slice("target/".length)) : copy[1];
  const wasm = isAbsolute(built) ? built : join(folder, built);

  const host = await startHost([wasm], "status");
  try {
    const client = await connect(host.base);
    for (const b of blocks) {
      if (b.attrs.session) {
        for (const line of b.body.split("\n").filter(Boolean)) {
          const frame = line.slice(2);
          if (line.startsWith("> ")) client.send(frame);
          else if (line.startsWith("< ")) assert.deepEqual(await client.recv(), JSON.parse(frame), `${guide}: ${line}`);
          else assert.fail(`${guide}: session line neither "> " nor "< ": ${line}`);
        }
      } else if (b.attrs.publish) {
        const out = await sh(b.body.replaceAll("127.0.0.1:8000", host.base), { cwd: folder, timeoutMs: 30_000 });
        const reply = JSON.parse(out);
        assert.equal(reply.failed, 0, `${guide}: publish failed: ${out}`);
      }
    }
    client.close();
  } catch (e) {
    e.message += `\n--- host log\n${host.log}`;
    throw e;
  } finally {
    await host.stop();
  }
}

for (const name of ["rust", "python", "javascript"]) {
  test(`docs/write-a-route-${name}.md, from an empty folder to a serving route`, { timeout: 1_200_000 }, () =>
    followGuide(name),
  );
}
