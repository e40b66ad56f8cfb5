// Test harness: builds kedge once and runs real `kedge serve` processes on
// the embedded broker, on loopback ports. Nothing here sleeps and hopes:
// every wait polls a condition with a deadline and fails when it passes.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const work = mkdtempSync(join(tmpdir(), "kedge-js-"));
const live = new Set(); // kedge processes still running
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

let bin;

/**
 * The kedge binary: $TEST_KEDGE_BIN, or built from this repository once per
 * test file. (Not KEDGE_…: kedge reads every KEDGE_ variable as configuration.)
 */
export function kedgeBin() {
  if (!bin) {
    bin = process.env.TEST_KEDGE_BIN;
    if (!bin) {
      bin = join(work, "kedge");
      execFileSync("go", ["build", "-o", bin, "./cmd/kedge"], { cwd: repo, stdio: "inherit" });
    }
  }
  return bin;
}

/** A new empty directory, removed when the process exits. */
export function tempDir() {
  return mkdtempSync(join(work, "data-"));
}

/** Polls cond (which may be async) every 20 ms until it is truthy; throws after ms. */
export async function waitFor(what, cond, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `kedge serve` and resolves once it logged "kedge ready" and /readyz
 * answers 200. dataDir keeps the embedded broker's log (so a later kedge on
 * the same dir sees the same topics); http is the listen address ("127.0.0.1:0"
 * for a random port).
 */
export async function startKedge({ dataDir = tempDir(), http = "127.0.0.1:0", sets = [] } = {}) {
  const args = ["serve", "--log.format", "json", "--http.listen", http, "--embedded.listen", "127.0.0.1:0", "--mqtt.listen", "127.0.0.1:0",
    "--set", `embedded.data.dir=${dataDir}`, ...sets.flatMap((s) => ["--set", s])];
  // The environment without KEDGE_ variables, which would configure kedge.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KEDGE_")));
  const proc = spawn(kedgeBin(), args, { stdio: ["ignore", "ignore", "pipe"], env });
  const logs = [];
  live.add(proc);
  const exited = new Promise((r) => proc.on("exit", (code, signal) => (live.delete(proc), r({ code, signal }))));
  const ready = new Promise((ok, fail) => {
    createInterface({ input: proc.stderr }).on("line", (line) => {
      logs.push(line);
      try {
        const m = JSON.parse(line);
        if (m.msg === "kedge ready") ok(m);
      } catch {}
    });
    exited.then((x) => fail(new Error(`kedge exited before ready (${JSON.stringify(x)}):\n${logs.join("\n")}`)));
  });
  let timer;
  const m = await Promise.race([ready, new Promise((_, fail) => (timer = setTimeout(() => fail(new Error("kedge not ready within 30 s:\n" + logs.join("\n"))), 30000)))])
    .finally(() => clearTimeout(timer))
    .catch((e) => {
      proc.kill("SIGKILL");
      throw e;
    });
  const node = {
    http: m.http,
    kafka: m.kafka,
    port: Number(m.http.split(":").pop()),
    url: `ws://${m.http}/v1/ws`,
    dataDir,
    logs,
    /** SIGTERM, then wait for a clean exit (30 s, then SIGKILL and throw). */
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      let t;
      const r = await Promise.race([exited, new Promise((ok) => (t = setTimeout(() => ok(null), 30000)))]);
      clearTimeout(t);
      if (!r) {
        proc.kill("SIGKILL");
        throw new Error("kedge did not stop within 30 s of SIGTERM");
      }
      if (r.code !== 0) throw new Error(`kedge exited with ${JSON.stringify(r)}:\n${logs.slice(-20).join("\n")}`);
    },
  };
  await waitFor("kedge /readyz", async () => {
    try {
      return (await fetch(`http://${m.http}/readyz`)).status === 200;
    } catch {
      return false;
    }
  }, 30000);
  return node;
}
