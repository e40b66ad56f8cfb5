// The client against real kedge processes (the embedded broker, loopback
// ports), with the `ws` package as the WebSocket implementation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, KedgeError, memoryStore } from "../dist/index.mjs";
import { startKedge, tempDir, waitFor } from "./kedge.mjs";

const opts = { WebSocketImpl: WebSocket, reconnectDelay: 50, maxReconnectDelay: 500 };
const clients = [];
/** A client that the test file closes at the end. */
function client(url, more = {}) {
  const c = connect({ url, ...opts, ...more });
  clients.push(c);
  return c;
}

let kedge; // shared by the tests that do not restart it
before(async () => {
  kedge = await startKedge({ sets: ["embedded.partitions=3"] });
});
after(async () => {
  for (const c of clients) c.close();
  await kedge?.stop();
});

const offset = (pos) => Number(pos.split("-")[2]);

test("subscribe, then publish: the ack carries the position, the message comes back with it", async () => {
  const c = client(kedge.url);
  const got = [];
  const sub = c.subscribe("/basic/k1", (m) => got.push(m));
  await sub.ready;
  const pos = await c.publish("/basic/k1", "hello", { headers: { h: "v" } });
  assert.match(pos, /^\d+-\d+-\d+$/);
  await waitFor("the message", () => got.length === 1);
  const m = got[0];
  assert.equal(m.subject, "/basic/k1");
  assert.equal(m.payload, "hello");
  assert.equal(m.position, pos);
  assert.equal(m.snapshot, false);
  assert.deepEqual(m.headers, { h: "v" });
  assert.ok(Math.abs(Date.parse(m.time) - Date.now()) < 60000, `time ${m.time}`);

  const bytes = new Uint8Array([0, 1, 2, 0xff, 0xfe]);
  const pos2 = await c.publish("/basic/k1", bytes);
  await waitFor("the binary message", () => got.length === 2);
  assert.deepEqual(got[1].payload, bytes);
  assert.equal(got[1].position, pos2);
  assert.ok(offset(pos2) > offset(pos));

  // A pattern subscription gets every key of the topic, each key in order.
  const all = [];
  await c.subscribe("/basic/+", (m) => all.push(`${m.subject}=${m.payload}`), { snapshot: false }).ready;
  for (let i = 0; i < 5; i++) for (const k of ["a", "b", "c"]) await c.publish(`/basic/${k}`, String(i));
  await waitFor("15 messages", () => all.length === 15);
  for (const k of ["a", "b", "c"]) {
    assert.deepEqual(all.filter((s) => s.startsWith(`/basic/${k}=`)), [0, 1, 2, 3, 4].map((i) => `/basic/${k}=${i}`));
  }
});

test("snapshot: a new subscriber first gets the latest message marked snapshot, unless it asks not to", async () => {
  const c1 = client(kedge.url);
  const seen = [];
  await c1.subscribe("/snap/k1", (m) => seen.push(m.payload)).ready;
  await c1.publish("/snap/k1", "old");
  await waitFor("the message back from Kafka (so it is cached)", () => seen.includes("old"));

  const c2 = client(kedge.url);
  const withSnap = [];
  await c2.subscribe("/snap/k1", (m) => withSnap.push([m.payload, m.snapshot])).ready;
  const c3 = client(kedge.url);
  const noSnap = [];
  await c3.subscribe("/snap/k1", (m) => noSnap.push([m.payload, m.snapshot]), { snapshot: false }).ready;
  await c1.publish("/snap/k1", "new");
  await waitFor("the live message on both", () => withSnap.length >= 2 && noSnap.length >= 1);
  assert.deepEqual(withSnap, [["old", true], ["new", false]]);
  assert.deepEqual(noSnap, [["new", false]]);
});

test("typed errors carry the protocol's codes, and the connection stays usable", async () => {
  const errors = [];
  const c = client(kedge.url, { onError: (e) => errors.push(e) });
  await assert.rejects(c.subscribe("no-slash", () => {}).ready, (e) => {
    assert.ok(e instanceof KedgeError);
    assert.equal(e.code, "invalid_subject");
    assert.equal(e.subject, "no-slash");
    return true;
  });
  await assert.rejects(c.subscribe("/a//b", () => {}).ready, (e) => e instanceof KedgeError && e.code === "invalid_subject");
  await assert.rejects(c.publish("/errs/+", "x"), (e) => e instanceof KedgeError && e.code === "invalid_pattern");
  await assert.rejects(c.publish("bad", "x"), (e) => e instanceof KedgeError && e.code === "invalid_subject" && e.subject === "bad");
  await assert.rejects(c.publish("/errs/k", "x".repeat(70 * 1024)), (e) => e instanceof KedgeError && e.code === "payload_too_large");
  assert.match(await c.publish("/errs/k", "fine"), /^\d+-\d+-\d+$/);
  assert.equal(c.state, "open");
  assert.deepEqual(errors, []);
});

test("a close code of 4500+ ends the client with an error instead of reconnecting", async () => {
  const errors = [];
  const states = [];
  const c = client(kedge.url, { onError: (e) => errors.push(e), onState: (s) => states.push(s) });
  await c.subscribe("/big/k", () => {}).ready;
  // A frame over the server's read limit (448 KiB by default): closed with 4501 (or gorilla's 1009).
  const p = c.publish("/big/k", "x".repeat(500 * 1024));
  await assert.rejects(p, (e) => e instanceof KedgeError && e.code === "closed" && [1009, 4501].includes(e.closeCode));
  assert.equal(c.state, "closed");
  assert.equal(errors.length, 1);
  assert.ok([1009, 4501].includes(errors[0].closeCode));
  assert.equal(states.at(-1), "closed");
  assert.ok(!states.includes("reconnecting"), states.join(","));
  await assert.rejects(c.publish("/big/k", "small"), (e) => e.code === "closed");
});

test("onReset: a stored cursor of another epoch cannot be resumed; the snapshot and live messages follow", async () => {
  const c1 = client(kedge.url);
  const seen = [];
  await c1.subscribe("/reset/k1", (m) => seen.push(m)).ready;
  const pos = await c1.publish("/reset/k1", "a");
  await waitFor("the message back from Kafka", () => seen.length === 1);
  const [epoch, part, off] = pos.split("-").map(Number);

  const store = memoryStore();
  store.set("/reset/k1", `${(epoch + 1) % 2 ** 32}-${part}-${off}`);
  const c2 = client(kedge.url, { positionStore: store });
  const resets = [];
  const got = [];
  await c2.subscribe("/reset/k1", (m) => got.push([m.payload, m.snapshot]), { onReset: (r) => resets.push(r) }).ready;
  await waitFor("the reset", () => resets.length === 1);
  assert.match(resets[0], /re-created|partition count/);
  await waitFor("the snapshot after the reset", () => got.length === 1);
  assert.deepEqual(got, [["a", true]]);
  // The reset's cursor replaced the stored one: this epoch, "a" included.
  assert.ok(store.get("/reset/k1").split(",").includes(pos), store.get("/reset/k1"));
  await c1.publish("/reset/k1", "b");
  await waitFor("the live message", () => got.length === 2);
  assert.deepEqual(got[1], ["b", false]);
  assert.equal(resets.length, 1);
});

test("a position store resumes a subscription where a previous client (an app restart) stopped", async () => {
  const store = memoryStore();
  const c1 = client(kedge.url, { positionStore: store });
  const first = [];
  await c1.subscribe("/store/k1", (m) => first.push(m.payload), { snapshot: false }).ready;
  for (const p of ["1", "2", "3"]) await c1.publish("/store/k1", p);
  await waitFor("3 messages", () => first.length === 3);
  const kept = store.get("/store/k1");
  c1.close();
  const c2 = client(kedge.url); // publishes while "the app" is not running
  for (const p of ["4", "5", "6"]) await c2.publish("/store/k1", p);

  const c3 = client(kedge.url, { positionStore: store });
  const resets = [];
  const got = [];
  await c3.subscribe("/store/k1", (m) => got.push([m.payload, m.snapshot]), { onReset: (r) => resets.push(r) }).ready;
  await c2.publish("/store/k1", "7");
  await waitFor("4 messages", () => got.length >= 4);
  assert.deepEqual(got, [["4", false], ["5", false], ["6", false], ["7", false]]);
  assert.deepEqual(resets, []);
  assert.notEqual(store.get("/store/k1"), kept);
});

test("kedge restarts: the client reconnects to the same URL and gets every message exactly once, in order", async (t) => {
  const first = await startKedge({ sets: ["embedded.partitions=3"] });
  t.after(() => first.stop());
  const urls = [];
  let tokens = 0;
  class Recording extends WebSocket {
    constructor(url) {
      urls.push(url);
      super(url);
    }
  }
  const states = [];
  const errors = [];
  const store = memoryStore();
  const a = client(first.url, {
    WebSocketImpl: Recording,
    positionStore: store,
    token: async () => `tok${++tokens}`,
    onState: (s) => states.push(s),
    onError: (e) => errors.push(e),
  });
  // The topics exist before the client subscribes (so its acks carry a
  // cursor for every partition): a first message on each, seen come back.
  const setup = client(first.url);
  const zeros = [];
  await setup.subscribe("/restart/k1", (m) => zeros.push(m.payload)).ready;
  await setup.subscribe("/restartp/z", (m) => zeros.push(m.payload)).ready;
  await setup.publish("/restart/k1", "0");
  await setup.publish("/restartp/z", "0");
  await waitFor("the first messages back", () => zeros.length === 2);
  setup.close();

  const exact = [];
  const pattern = [];
  const resets = [];
  const onReset = (r) => resets.push(r);
  await a.subscribe("/restart/k1", (m) => exact.push(m.payload), { snapshot: false, onReset }).ready;
  await a.subscribe("/restartp/#", (m) => pattern.push(`${m.subject}=${m.payload}`), { snapshot: false, onReset }).ready;
  assert.equal(store.get("/restartp/#").split(",").length, 3, "a cursor for each of the 3 partitions");
  const keys = ["a", "b", "c", "d"];
  let n = 0;
  const publishSome = async (c, count) => {
    for (let i = 0; i < count; i++) {
      n++;
      await c.publish("/restart/k1", String(n));
      await c.publish(`/restartp/${keys[n % keys.length]}`, String(n));
    }
  };
  await publishSome(a, 5);
  await waitFor("the first 5", () => exact.length === 5 && pattern.length === 5);

  // Stop kedge (SIGTERM: clients are closed with 4000) and, while the client
  // cannot connect, publish through another kedge on the same data directory.
  await first.stop();
  await waitFor("the client to notice", () => a.state === "reconnecting");
  const middle = await startKedge({ dataDir: first.dataDir });
  assert.notEqual(middle.port, first.port);
  const b = client(middle.url);
  await publishSome(b, 10);
  b.close();
  await middle.stop();

  // A new kedge on the same port: the client reconnects by itself and resumes.
  const opens = states.filter((s) => s === "open").length;
  const third = await startKedge({ dataDir: first.dataDir, http: `127.0.0.1:${first.port}` });
  t.after(() => third.stop());
  await waitFor("the client to reconnect", () => states.filter((s) => s === "open").length > opens, 30000);
  await publishSome(client(third.url), 5);
  await waitFor("all 20", () => exact.length >= 20 && pattern.length >= 20, 30000);
  // The last message is there; nothing may come twice or out of order.
  assert.deepEqual(exact, Array.from({ length: 20 }, (_, i) => String(i + 1)));
  const want = Array.from({ length: 20 }, (_, i) => `/restartp/${keys[(i + 1) % keys.length]}=${i + 1}`);
  for (const k of keys) {
    const mine = (s) => s.startsWith(`/restartp/${k}=`);
    assert.deepEqual(pattern.filter(mine), want.filter(mine), `key ${k}`);
  }
  assert.equal(pattern.length, 20);
  assert.deepEqual(resets, []);
  assert.deepEqual(errors, []);
  // The token provider ran before each connect attempt.
  assert.ok(urls.length >= 2);
  urls.forEach((u, i) => assert.equal(u, `${first.url}?token=tok${i + 1}`));
});

test("offline queue: publishes made while kedge is down are sent after it is back, each resolved by its ack", async (t) => {
  const first = await startKedge();
  t.after(() => first.stop());
  const a = client(first.url, { maxQueue: 3 });
  const got = [];
  await a.subscribe("/offline/k1", (m) => got.push([m.payload, m.position]), { snapshot: false }).ready;
  const p0 = await a.publish("/offline/k1", "0");
  // The topic did not exist when the client subscribed, so the ack had no
  // start cursor: the first message received is what gives it one.
  await waitFor("the first message", () => got.length === 1);
  await first.stop();
  await waitFor("the client to notice", () => a.state === "reconnecting");

  const settled = [];
  const queued = ["1", "2", "3"].map((p) => a.publish("/offline/k1", p).then((pos) => (settled.push(p), pos)));
  await assert.rejects(a.publish("/offline/k1", "4"), (e) => e instanceof KedgeError && e.code === "queue_full");
  assert.deepEqual(settled, []);

  const second = await startKedge({ dataDir: first.dataDir, http: `127.0.0.1:${first.port}` });
  t.after(() => second.stop());
  const positions = await Promise.all(queued);
  assert.deepEqual(settled, ["1", "2", "3"]);
  const offs = positions.map(offset);
  assert.deepEqual(offs, [offset(p0) + 1, offset(p0) + 2, offset(p0) + 3]);
  await waitFor("the 4 messages", () => got.length >= 4).catch((e) => assert.fail(`${e.message}: got ${JSON.stringify(got)}, published ${positions}`));
  assert.deepEqual(got, [["0", p0], ["1", positions[0]], ["2", positions[1]], ["3", positions[2]]]);
});

test("authentication: the token goes in the query; refused, missing, forbidden and expired credentials", async (t) => {
  // Static tokens: "short" expires soon after kedge starts, "long" does not.
  const dir = tempDir();
  const file = join(dir, "tokens.json");
  const expires = new Date(Date.now() + 10000).toISOString();
  writeFileSync(file, JSON.stringify([
    { name: "app", token_sha256: await sha256("short"), subscribe: ["/auth/#"], publish: ["/auth/#"], expires },
    { name: "app", token_sha256: await sha256("long"), subscribe: ["/auth/#"], publish: ["/auth/#"] },
  ]));
  const k = await startKedge({ sets: ["auth.mode=static", `auth.static.file=${file}`] });
  t.after(() => k.stop());

  // No token: every request is refused with a typed error.
  const anon = client(k.url);
  await assert.rejects(anon.subscribe("/auth/k", () => {}).ready, (e) => e instanceof KedgeError && e.code === "unauthorized");
  anon.close();

  // A refused token gets HTTP 401 (seen as an abnormal close): the client
  // retries and calls the provider again. "short" works until it expires
  // (a 4502 close), then the provider's next token takes over and the
  // subscription resumes without a gap.
  const tokens = ["wrong", "short", "long"];
  let calls = 0;
  const closes = [];
  const a = client(k.url, {
    token: () => tokens[Math.min(calls++, tokens.length - 1)],
    onState: (s, d) => s === "reconnecting" && closes.push(d.code),
  });
  const got = [];
  await a.subscribe("/auth/k", (m) => got.push(m.payload), { snapshot: false }).ready;
  assert.equal(calls, 2);
  await assert.rejects(a.publish("/other/k", "x"), (e) => e instanceof KedgeError && e.code === "forbidden" && e.subject === "/other/k");
  const pub = client(k.url, { token: "long" });
  await pub.publish("/auth/k", "1");
  await waitFor("message 1", () => got.length === 1);
  await waitFor("the expiry close (4502)", () => closes.includes(4502), 30000);
  await pub.publish("/auth/k", "2"); // while a reconnects, or after
  await waitFor("message 2 after the reconnect", () => got.length === 2 && a.state === "open");
  assert.deepEqual(got, ["1", "2"]);
  assert.equal(calls, 3);
  assert.equal(a.state, "open");
});

async function sha256(s) {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return Buffer.from(d).toString("hex");
}
