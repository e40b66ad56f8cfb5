// The client against a scripted WebSocket: what a real server does not do on
// demand (duplicates, chosen close codes, silence) and exact request shapes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, KedgeError, matches, memoryStore } from "../dist/index.mjs";
import { waitFor } from "./kedge.mjs";

/** A WebSocket the test drives: open(), recv(frame), end(code). */
class FakeWS {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWS.all.push(this);
  }
  send(d) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(d));
  }
  close(code) {
    this.readyState = 3;
    this.closedWith = code ?? 1005;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  recv(f) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  end(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** The n-th request sent with this op (waits for it). */
  async req(op, n = 0) {
    return waitFor(`a ${op} request`, () => this.sent.filter((f) => f.op === op)[n], 2000);
  }
}

/** A client on FakeWS; returns it with a helper for the next socket it opens. */
function fake(opts = {}) {
  const start = FakeWS.all.length;
  const errors = [];
  const states = [];
  const c = connect({
    url: "ws://kedge.test/v1/ws",
    WebSocketImpl: FakeWS,
    reconnectDelay: 1,
    maxReconnectDelay: 5,
    pingInterval: 0,
    onError: (e) => errors.push(e),
    onState: (s, d) => states.push([s, d]),
    ...opts,
  });
  let seen = start;
  const next = () => waitFor("a new socket", () => FakeWS.all[seen] && FakeWS.all[seen++], 2000);
  return { c, next, errors, states };
}

const msg = (subject, position, payload = position, snapshot = false) => ({ op: "message", subject, payload, position, snapshot });

test("duplicates are dropped: at or below the cursor it resumed from, and repeats on one connection", async () => {
  const store = memoryStore();
  const { c, next } = fake({ positionStore: store });
  const got = [];
  const sub = c.subscribe("/d/k", (m) => got.push(m.position));
  let ws = await next();
  ws.open();
  const s1 = await ws.req("subscribe");
  assert.deepEqual(s1, { op: "subscribe", subjects: ["/d/k"], id: s1.id });
  ws.recv({ op: "ack", id: s1.id, cursors: { "/d/k": "7-0-10" } });
  await sub.ready;
  assert.equal(store.get("/d/k"), "7-0-10");
  for (const p of ["7-0-9", "7-0-10", "7-0-11", "7-0-12", "7-0-12", "7-0-11", "7-0-13"]) ws.recv(msg("/d/k", p));
  assert.deepEqual(got, ["7-0-11", "7-0-12", "7-0-13"]);
  assert.equal(store.get("/d/k"), "7-0-13");

  ws.end(4001, "slow consumer");
  ws = await next();
  ws.open();
  const s2 = await ws.req("subscribe");
  assert.deepEqual(s2.positions, { "/d/k": "7-0-13" });
  ws.recv({ op: "ack", id: s2.id });
  for (const p of ["7-0-12", "7-0-13", "7-0-14"]) ws.recv(msg("/d/k", p));
  assert.deepEqual(got, ["7-0-11", "7-0-12", "7-0-13", "7-0-14"]);
  c.close();
});

test("a pattern keeps one entry per partition and resumes with all of them", async () => {
  const { c, next } = fake();
  const got = [];
  c.subscribe("/p/+", (m) => got.push(`${m.subject}@${m.position}`));
  let ws = await next();
  ws.open();
  const s1 = await ws.req("subscribe");
  ws.recv({ op: "ack", id: s1.id, cursors: { "/p/+": "5-0--1,5-1-3,5-2-9" } });
  ws.recv(msg("/p/a", "5-0-0"));
  ws.recv(msg("/p/b", "5-1-4"));
  ws.recv(msg("/p/a", "5-0-1"));
  ws.recv(msg("/x/a", "5-0-2")); // another topic: not this subscription's
  ws.end(1006);
  ws = await next();
  ws.open();
  const s2 = await ws.req("subscribe");
  assert.deepEqual(s2.positions, { "/p/+": "5-0-1,5-1-4,5-2-9" });
  assert.deepEqual(got, ["/p/a@5-0-0", "/p/b@5-1-4", "/p/a@5-0-1"]);
  c.close();
});

test("a subject and a pattern that both match get each message once, from the two frames the server sends", async () => {
  const { c, next } = fake();
  const exact = [];
  const pattern = [];
  c.subscribe("/o/k", (m) => exact.push(m.position));
  c.subscribe("/o/#", (m) => pattern.push(m.position));
  const ws = await next();
  ws.open();
  const a = await ws.req("subscribe", 0);
  const b = await ws.req("subscribe", 1);
  ws.recv({ op: "ack", id: a.id, cursors: { "/o/k": "1-0-4" } });
  ws.recv({ op: "ack", id: b.id, cursors: { "/o/#": "1-0-4" } });
  ws.recv(msg("/o/k", "1-0-5"));
  ws.recv(msg("/o/k", "1-0-5"));
  ws.recv(msg("/o/j", "1-0-6"));
  ws.recv(msg("/o/k", "1-0-7"));
  ws.recv(msg("/o/k", "1-0-7"));
  assert.deepEqual(exact, ["1-0-5", "1-0-7"]);
  assert.deepEqual(pattern, ["1-0-5", "1-0-6", "1-0-7"]);
  // A snapshot goes to the subscription that just subscribed, not to both.
  const late = [];
  c.subscribe("/o/+", (m) => late.push(m.position));
  const s = await ws.req("subscribe", 2);
  ws.recv({ op: "ack", id: s.id, cursors: { "/o/+": "1-0-7" } });
  ws.recv(msg("/o/k", "1-0-7", "x", true));
  assert.deepEqual(late, ["1-0-7"]);
  assert.deepEqual(exact, ["1-0-5", "1-0-7"]);
  c.close();
});

test("a reset calls onReset and replaces the cursor with the reset's (or forgets it when there is none)", async () => {
  const store = memoryStore();
  store.set("/r/k", "9-0-50");
  const { c, next } = fake({ positionStore: store });
  const resets = [];
  const got = [];
  c.subscribe("/r/k", (m) => got.push([m.position, m.snapshot]), { onReset: (r) => resets.push(r) });
  const ws = await next();
  ws.open();
  const s = await ws.req("subscribe");
  assert.deepEqual(s.positions, { "/r/k": "9-0-50" });
  ws.recv({ op: "ack", id: s.id });
  ws.recv({ op: "reset", subject: "/r/k", reason: "the topic was re-created", cursor: "10-0-3" });
  assert.deepEqual(resets, ["the topic was re-created"]);
  assert.equal(store.get("/r/k"), "10-0-3");
  ws.recv(msg("/r/k", "10-0-3", "snap", true));
  ws.recv(msg("/r/k", "10-0-4"));
  assert.deepEqual(got, [["10-0-3", true], ["10-0-4", false]]);
  assert.equal(store.get("/r/k"), "10-0-4");
  // Resumes from there after a reconnect.
  ws.end(1006);
  const ws2 = await next();
  ws2.open();
  assert.deepEqual((await ws2.req("subscribe")).positions, { "/r/k": "10-0-4" });
  // A reset without a cursor (the topic's partitions are unknown) forgets it.
  ws2.recv({ op: "ack", id: (await ws2.req("subscribe")).id });
  ws2.recv({ op: "reset", subject: "/r/k", reason: "unknown" });
  assert.equal(store.get("/r/k"), undefined);
  ws2.end(1006);
  const ws3 = await next();
  ws3.open();
  assert.equal((await ws3.req("subscribe")).positions, undefined);
  assert.equal(resets.length, 2);
  c.close();
});

test("a stored cursor the server refuses is dropped (onReset) and the subscribe is sent again without it", async () => {
  const store = memoryStore();
  store.set("/r/k", "1-0-5");
  const { c, next } = fake({ positionStore: store });
  const resets = [];
  const sub = c.subscribe("/r/k", () => {}, { onReset: (r) => resets.push(r) });
  const ws = await next();
  ws.open();
  const s1 = await ws.req("subscribe");
  ws.recv({ op: "error", id: s1.id, code: "invalid_position", subject: "/r/k", message: "bad" });
  const s2 = await ws.req("subscribe", 1);
  assert.equal(s2.positions, undefined);
  assert.equal(resets.length, 1);
  ws.recv({ op: "ack", id: s2.id });
  await sub.ready;
  // An unreadable stored cursor is not even sent.
  store.set("/r/j", "garbage");
  c.subscribe("/r/j", () => {});
  const s3 = await ws.req("subscribe", 2);
  assert.equal(s3.positions, undefined);
  c.close();
});

test("close codes: 4000–4499 and abnormal closes reconnect with growing jittered delays; 4500+ and 1009 stop", async () => {
  for (const code of [4501, 4500, 4502, 1009]) {
    const { c, next, errors, states } = fake();
    const sub = c.subscribe("/a/b", () => {});
    const ws = await next();
    ws.open();
    const p = c.publish("/a/b", "x");
    ws.end(code, "too big");
    assert.equal(c.state, "closed");
    await assert.rejects(p, (e) => e instanceof KedgeError && e.code === "closed" && e.closeCode === code);
    await assert.rejects(sub.ready, (e) => e.code === "closed");
    assert.equal(errors.length, 1);
    assert.equal(errors[0].closeCode, code);
    assert.deepEqual(states.at(-1), ["closed", { code, reason: "too big" }]);
    await assert.rejects(c.publish("/a/b", "y"), (e) => e.code === "closed" && e.closeCode === code);
  }
  // 4502 (unauthorized) ends a client with a fixed token, but a token
  // provider can bring new credentials: that client reconnects.
  {
    const fixed = fake({ token: "t" });
    const ws = await fixed.next();
    ws.open();
    ws.end(4502, "token expired");
    assert.equal(fixed.c.state, "closed");
    assert.equal(fixed.errors[0].closeCode, 4502);
    let n = 0;
    const refreshing = fake({ token: () => `t${++n}` });
    const ws1 = await refreshing.next();
    ws1.open();
    ws1.end(4502, "token expired");
    assert.equal(refreshing.c.state, "reconnecting");
    assert.equal((await refreshing.next()).url, "ws://kedge.test/v1/ws?token=t2");
    refreshing.c.close();
  }
  const { c, next, states } = fake({ reconnectDelay: 8, maxReconnectDelay: 40 });
  for (const code of [4000, 4001, 4003, 4499, 1006, 1002, 1001, 1011]) {
    const ws = await next();
    ws.end(code); // never opened: the delay keeps growing
    assert.equal(c.state, "reconnecting");
  }
  const delays = states.filter(([s]) => s === "reconnecting").map(([, d]) => d.delay);
  const caps = [8, 16, 32, 40, 40, 40, 40, 40];
  delays.forEach((d, i) => assert.ok(d >= caps[i] / 2 && d <= caps[i], `delay ${i} = ${d}, want ${caps[i] / 2}..${caps[i]}`));
  const ws = await next();
  ws.open(); // an open connection starts the delays over
  ws.end(4000);
  assert.ok(states.at(-1)[1].delay <= 8);
  c.close();
});

test("the token provider runs before every connect and its token goes in the query", async () => {
  let n = 0;
  const { c, next } = fake({ url: "ws://kedge.test/v1/ws?x=1", token: async () => `t ${++n}` });
  let ws = await next();
  assert.equal(ws.url, "ws://kedge.test/v1/ws?x=1&token=t%201");
  ws.end(1006);
  ws = await next();
  assert.equal(ws.url, "ws://kedge.test/v1/ws?x=1&token=t%202");
  c.close();
  const f = fake({ token: "static" });
  assert.equal((await f.next()).url, "ws://kedge.test/v1/ws?token=static");
  f.c.close();
  // A failing provider is reported and retried.
  let calls = 0;
  const g = fake({ token: () => { if (++calls === 1) throw new Error("no network"); return "ok"; } });
  assert.equal((await g.next()).url, "ws://kedge.test/v1/ws?token=ok");
  assert.equal(g.errors[0].code, "token_failed");
  g.c.close();
});

test("offline queue: bounded, sent in order after connect, each resolved only by its ack", async () => {
  const { c, next } = fake({ maxQueue: 2 });
  let settled = 0;
  const p1 = c.publish("/q/k", "1").finally(() => settled++);
  const p2 = c.publish("/q/k", new Uint8Array([0, 1, 255]), { headers: { h: "v" } }).finally(() => settled++);
  await assert.rejects(c.publish("/q/k", "3"), (e) => e instanceof KedgeError && e.code === "queue_full" && e.subject === "/q/k");
  let ws = await next();
  ws.open();
  const a = await ws.req("publish", 0);
  const b = await ws.req("publish", 1);
  assert.deepEqual([a.payload, b.payload_b64, b.headers], ["1", "AAH/", { h: "v" }]);
  assert.equal(settled, 0);
  ws.recv({ op: "ack", id: b.id, position: "1-0-2" });
  ws.recv({ op: "ack", id: a.id, position: "1-0-1" });
  assert.deepEqual(await Promise.all([p1, p2]), ["1-0-1", "1-0-2"]);

  // Sent and unanswered when the connection ends: the outcome is unknown.
  const lost = c.publish("/q/k", "4");
  await ws.req("publish", 2);
  // Refused as the server shuts down: it never reached Kafka, so it is sent again.
  const again = c.publish("/q/k", "5");
  const r = await ws.req("publish", 3);
  ws.recv({ op: "error", id: r.id, code: "shutting_down", message: "bye" });
  ws.end(4000);
  await assert.rejects(lost, (e) => e.code === "connection_lost");
  ws = await next();
  ws.open();
  const r2 = await ws.req("publish");
  assert.equal(r2.payload, "5");
  ws.recv({ op: "error", id: r2.id, code: "kafka_timeout", subject: "/q/k", message: "slow" });
  await assert.rejects(again, (e) => e instanceof KedgeError && e.code === "kafka_timeout" && e.subject === "/q/k" && e.message === "slow");
  c.close();
});

test("requests go out in call order (with a synchronous store); an async store delays only its subscribe", async () => {
  const { c, next } = fake();
  const ws = await next();
  ws.open();
  c.subscribe("/s/k", () => {});
  c.publish("/s/k", "1").catch(() => {}); // unanswered: rejected by close()
  assert.deepEqual(ws.sent.map((f) => f.op), ["subscribe", "publish"]);
  c.close();
  let release;
  const slow = { get: () => new Promise((r) => (release = r)), set() {}, delete() {} };
  const f = fake({ positionStore: slow });
  const ws2 = await f.next();
  ws2.open();
  f.c.subscribe("/s/k", () => {});
  f.c.publish("/s/k", "1").catch(() => {});
  assert.deepEqual(ws2.sent.map((x) => x.op), ["publish"]);
  release("3-0-7");
  assert.deepEqual((await ws2.req("subscribe")).positions, { "/s/k": "3-0-7" });
  f.c.close();
  // A store that fails is reported, and the subscription starts without a cursor.
  const bad = { get: () => Promise.reject(new Error("disk")), set() {}, delete() {} };
  const g = fake({ positionStore: bad });
  const ws3 = await g.next();
  ws3.open();
  g.c.subscribe("/s/k", () => {});
  assert.equal((await ws3.req("subscribe")).positions, undefined);
  assert.equal(g.errors[0].code, "store_failed");
  g.c.close();
});

test("close() rejects what waits; a closed client refuses calls", async () => {
  const { c, next, states } = fake();
  const queued = c.publish("/c/k", "1");
  const sub = c.subscribe("/c/k", () => {});
  const ws = await next();
  c.close();
  assert.equal(ws.closedWith, 1000);
  assert.equal(c.state, "closed");
  assert.deepEqual(states.at(-1), ["closed", {}]);
  await assert.rejects(queued, (e) => e.code === "closed");
  await assert.rejects(sub.ready, (e) => e.code === "closed");
  await assert.rejects(c.subscribe("/c/k", () => {}).ready, (e) => e.code === "closed");
});

test("unsubscribe: the last handle of a subject ends it on the server and deletes its stored cursor", async () => {
  const store = memoryStore();
  const { c, next } = fake({ positionStore: store });
  const a = [];
  const b = [];
  const h1 = c.subscribe("/u/k", (m) => a.push(m.position));
  const h2 = c.subscribe("/u/k", (m) => b.push(m.position));
  const ws = await next();
  ws.open();
  const s = await ws.req("subscribe");
  assert.equal(ws.sent.filter((f) => f.op === "subscribe").length, 1);
  ws.recv({ op: "ack", id: s.id, cursors: { "/u/k": "1-0-0" } });
  await Promise.all([h1.ready, h2.ready]);
  ws.recv(msg("/u/k", "1-0-1"));
  await h1.unsubscribe();
  ws.recv(msg("/u/k", "1-0-2"));
  assert.equal(ws.sent.filter((f) => f.op === "unsubscribe").length, 0);
  const done = h2.unsubscribe();
  const u = await ws.req("unsubscribe");
  assert.deepEqual(u.subjects, ["/u/k"]);
  ws.recv({ op: "ack", id: u.id });
  await done;
  ws.recv(msg("/u/k", "1-0-3"));
  assert.deepEqual(a, ["1-0-1"]);
  assert.deepEqual(b, ["1-0-1", "1-0-2"]);
  assert.equal(store.get("/u/k"), undefined);
  c.close();
});

test("closing from onState stops everything (no keepalive timer left running)", async () => {
  let c;
  const f = fake({ pingInterval: 5, onState: (s) => s === "open" && c.close() });
  c = f.c;
  const ws = await f.next();
  ws.open();
  assert.equal(c.state, "closed");
  assert.equal(ws.closedWith, 1000);
  // A keepalive timer left running would ping (or drop the socket) within
  // 10 ms; the socket must stay untouched for 25 intervals.
  const sends = ws.sent.length;
  await new Promise((r) => setTimeout(r, 125));
  assert.equal(ws.sent.length, sends);
  assert.equal(ws.closedWith, 1000); // a keepalive drop would have closed it again
  assert.equal(FakeWS.all.at(-1), ws);
});

test("keepalive: a silent connection gets a ping, then is dropped and replaced", async () => {
  const { c, next } = fake({ pingInterval: 20 });
  const ws = await next();
  ws.open();
  const ping = await ws.req("ping");
  assert.equal(typeof ping.id, "number");
  const ws2 = await next();
  assert.notEqual(ws2, ws);
  c.close();
});

test("binary payloads and headers", async () => {
  const { c, next } = fake();
  const got = [];
  c.subscribe("/b/k", (m) => got.push(m));
  const ws = await next();
  ws.open();
  const s = await ws.req("subscribe");
  ws.recv({ op: "ack", id: s.id });
  for (let n = 0; n < 8; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + n) & 255);
    const p = c.publish("/b/k", bytes);
    const r = await ws.req("publish", n);
    assert.equal(r.payload_b64, Buffer.from(bytes).toString("base64"));
    ws.recv({ op: "ack", id: r.id, position: `1-0-${n}` });
    await p;
    ws.recv({ op: "message", subject: "/b/k", payload_b64: r.payload_b64, position: `1-0-${n}`, headers_b64: { bin: r.payload_b64 } });
    assert.deepEqual(got[n].payload, bytes);
    assert.deepEqual(got[n].binaryHeaders.bin, bytes);
  }
  c.close();
});

test("matches: + is one segment, a final # any number, the topic is literal", () => {
  const yes = [["/a/+", "/a/b"], ["/a/#", "/a"], ["/a/#", "/a/b/c"], ["/a/+/c", "/a/b/c"], ["/a/b", "/a/b"], ["/a/+/#", "/a/b"]];
  const no = [["/a/+", "/a"], ["/a/+", "/a/b/c"], ["/a/b", "/a/c"], ["/a/#", "/b/c"], ["/a/+/c", "/a/b/d"], ["/a", "/a/b"]];
  for (const [f, s] of yes) assert.ok(matches(f, s), `${f} ~ ${s}`);
  for (const [f, s] of no) assert.ok(!matches(f, s), `${f} !~ ${s}`);
});
