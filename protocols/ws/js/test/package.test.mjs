// The package as its users get it: both module formats through "exports",
// and nothing in the library that only Node has.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const names = ["KedgeClient", "KedgeError", "connect", "matches", "memoryStore"];

test("ESM and CommonJS builds export the same API", async () => {
  const esm = await import("@kedge/client");
  const cjs = createRequire(import.meta.url)("@kedge/client");
  assert.deepEqual(Object.keys(esm).sort(), names);
  assert.deepEqual(Object.keys(cjs).filter((k) => k !== "__esModule").sort(), names);
  const e = new cjs.KedgeError("queue_full", "full", { subject: "/a" });
  assert.ok(e instanceof Error);
  assert.equal(e.name, "KedgeError");
  assert.equal(e.code, "queue_full");
});

test("the library imports nothing: no Node modules, no globals but WebSocket and timers", () => {
  for (const f of ["dist/index.mjs", "dist/index.cjs"]) {
    const src = readFileSync(new URL(`../${f}`, import.meta.url), "utf8");
    assert.doesNotMatch(src, /\brequire\(|\bimport\s*\(|^import |from\s+["']/m, f);
    assert.doesNotMatch(src, /\b(process|Buffer|global|window|document|self)\./, f);
  }
});

test("the web console's copy of the client (protocols/console/static/kedge-client.js) is built from this source", async () => {
  const { build } = await import("esbuild");
  const { consoleBundleFile, consoleBundleOptions } = await import("../console-bundle.mjs");
  const fresh = await build({ ...consoleBundleOptions, write: false });
  // What is committed (make build rewrites the working copy before tests).
  const { execFileSync } = await import("node:child_process");
  let committed;
  try {
    committed = execFileSync("git", ["show", "HEAD:protocols/console/static/kedge-client.js"], { encoding: "utf8" });
  } catch {
    committed = readFileSync(consoleBundleFile, "utf8"); // not a git checkout
  }
  assert.equal(committed, fresh.outputFiles[0].text, "run `make js` and commit protocols/console/static/kedge-client.js");
  assert.match(committed, /var kedge=/);
});
