// The TypeScript example in the repository's README works as written: it
// type-checks against the built package and, run against a real kedge (its
// URL swapped in), prints the publish's position and the message back.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";
import { startKedge, waitFor } from "./kedge.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
// Inside the package, so that `import … from "@kedge/client"` resolves to it.
const tmp = join(pkg, ".test-tmp");

function snippet() {
  const readme = readFileSync(join(pkg, "../../../README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).filter((b) => b.includes('"@kedge/client"'));
  assert.equal(blocks.length, 1, "README.md has one ```ts block importing @kedge/client");
  const code = blocks[0];
  assert.ok(code.trim().split("\n").length <= 10, "the README example is at most ten lines");
  return code;
}

test("every TypeScript snippet of docs/sdk-typescript.md type-checks against the package", () => {
  const doc = readFileSync(join(pkg, "../../../docs/sdk-typescript.md"), "utf8");
  const blocks = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 6, `found ${blocks.length} snippets`);
  const dir = join(tmp, "doc");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  // Snippets may use a client made elsewhere, and AsyncStorage (whose real
  // signatures are declared here: React Native is not installed).
  writeFileSync(join(dir, "ambient.d.ts"), `declare module "@react-native-async-storage/async-storage" {
  const AsyncStorage: {
    getItem(key: string): Promise<string | null>;
    setItem(key: string, value: string): Promise<void>;
    removeItem(key: string): Promise<void>;
    multiSet(pairs: ReadonlyArray<readonly [string, string]>): Promise<void>;
    multiRemove(keys: readonly string[]): Promise<void>;
  };
  export default AsyncStorage;
}
`);
  const files = blocks.map((b, i) => {
    const f = join(dir, `snippet${i}.mts`);
    const prelude = /\bkedge\./.test(b) && !/const kedge\b/.test(b) ? 'import type { KedgeClient } from "@kedge/client";\ndeclare const kedge: KedgeClient;\n' : "";
    writeFileSync(f, prelude + b + "\nexport {};\n");
    return f;
  });
  execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "--noEmit", "--strict", "--target", "es2022",
    "--module", "nodenext", "--moduleResolution", "nodenext", "--types", "node", "--lib", "es2022", join(dir, "ambient.d.ts"), ...files], { stdio: "inherit" });
});

test("the README's TypeScript example type-checks and works against a real kedge", async (t) => {
  const code = snippet();
  assert.ok(code.includes('"ws://localhost:8080/v1/ws"'), "the example connects to kedge's default URL");
  mkdirSync(tmp, { recursive: true });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  writeFileSync(join(tmp, "readme.mts"), code);
  execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "--noEmit", "--strict", "--target", "es2022",
    "--module", "nodenext", "--moduleResolution", "nodenext", "--types", "node", "--lib", "es2022", join(tmp, "readme.mts")], { stdio: "inherit" });

  const kedge = await startKedge();
  t.after(() => kedge.stop());
  const js = (await transform(code, { loader: "ts", format: "esm", target: "es2022" })).code;
  writeFileSync(join(tmp, "readme.mjs"), js.replace("ws://localhost:8080/v1/ws", kedge.url));
  // Node 20 has no global WebSocket (browsers, React Native and Node 22+ do): give it the ws package's.
  writeFileSync(join(tmp, "global-ws.mjs"), `import WebSocket from "ws";\nglobalThis.WebSocket = WebSocket;\n`);
  const child = spawn(process.execPath, ["--import", "./.test-tmp/global-ws.mjs", "./.test-tmp/readme.mjs"], { cwd: pkg });
  t.after(() => child.kill());
  let out = "";
  let errOut = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (errOut += d));
  const lines = () => out.split("\n");
  const seen = await waitFor("the example's output", () => {
    assert.equal(child.exitCode, null, `the example exited: ${errOut}`);
    const pub = lines().find((l) => l.startsWith("published at "));
    const pos = pub?.slice("published at ".length);
    return pos && lines().includes(`message /demo/k1 hello ${pos}`) && pos;
  }, 20000).catch((e) => {
    throw new Error(`${e.message}\nstdout:\n${out}\nstderr:\n${errOut}`);
  });
  assert.match(seen, /^\d+-\d+-\d+$/);
});
