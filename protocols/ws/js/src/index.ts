/**
 * @kedge/client: a client for kedge's WebSocket protocol (docs/protocol-ws.md).
 *
 * Written for the standard WebSocket API only, so it runs unchanged in
 * browsers, React Native and (with a WebSocket implementation passed in) Node.
 * See docs/sdk-typescript.md.
 */

/** Error codes the server sends (docs/protocol-ws.md, "Error codes"). */
export type ProtocolErrorCode =
  | "invalid_json"
  | "binary_frame"
  | "unknown_op"
  | "missing_field"
  | "invalid_field"
  | "invalid_subject"
  | "invalid_pattern"
  | "not_exposed"
  | "too_many_subscriptions"
  | "payload_too_large"
  | "invalid_position"
  | "kafka_unavailable"
  | "kafka_timeout"
  | "kafka_busy"
  | "kafka_rejected"
  | "shutting_down"
  | "unauthorized"
  | "token_expired"
  | "forbidden"
  | "auth_unavailable"
  | "unsupported"
  | "internal";

/**
 * Error codes of the client itself:
 * - `closed`: the client was closed, by close() or by the server with a close
 *   code that forbids reconnecting (4500–4999, 1009; see `closeCode`);
 * - `connection_lost`: the connection ended after a publish was sent and
 *   before its answer: the message may or may not be in Kafka;
 * - `queue_full`: the offline publish queue holds `maxQueue` publishes;
 * - `handler_failed`: a message handler or callback threw (given to onError);
 * - `store_failed`: the position store threw or rejected (given to onError);
 * - `token_failed`: the token provider threw or rejected (given to onError;
 *   the client retries with backoff).
 */
export type ClientErrorCode =
  | "closed"
  | "connection_lost"
  | "queue_full"
  | "handler_failed"
  | "store_failed"
  | "token_failed";

/** Every code a KedgeError may carry. The server may add codes later. */
export type ErrorCode = ProtocolErrorCode | ClientErrorCode;

/** The one error type of this package. */
export class KedgeError extends Error {
  /** A code from the protocol's list or the client's own. */
  readonly code: ErrorCode | (string & {});
  /** The subject the server named, where there is one. */
  readonly subject?: string;
  /** The WebSocket close code, for code "closed" caused by the server. */
  readonly closeCode?: number;
  /** What was thrown, for handler_failed, store_failed and token_failed. */
  readonly cause?: unknown;

  constructor(code: ErrorCode | (string & {}), message: string, extra?: { subject?: string; closeCode?: number; cause?: unknown }) {
    super(message);
    this.name = "KedgeError";
    this.code = code;
    if (extra) {
      this.subject = extra.subject;
      this.closeCode = extra.closeCode;
      this.cause = extra.cause;
    }
  }
}

/** One message of a subscription. */
export interface Message {
  /** The message's own subject (for a pattern subscription, the subject that matched). */
  subject: string;
  /** The payload: a string when the record value is UTF-8 text, bytes otherwise. */
  payload: string | Uint8Array;
  /** The opaque position token of the record (its Kafka coordinates). */
  position: string;
  /** True for the latest cached message sent when subscribing (or after a reset). */
  snapshot: boolean;
  /** The Kafka record timestamp, ISO 8601 UTC with milliseconds. */
  time?: string;
  /** Headers with UTF-8 values. */
  headers: Record<string, string>;
  /** Headers whose values are not UTF-8. */
  binaryHeaders?: Record<string, Uint8Array>;
}

/**
 * Keeps one cursor per subscribed subject or pattern, so a subscription
 * resumes where it stopped after an app restart. Every method may be
 * synchronous or return a Promise. Calls come in order: set after each
 * message (after its handler returned), delete on unsubscribe and reset.
 */
export interface PositionStore {
  get(subject: string): string | null | undefined | Promise<string | null | undefined>;
  set(subject: string, cursor: string): void | Promise<void>;
  delete(subject: string): void | Promise<void>;
}

/** The default store: positions survive reconnects, not restarts. */
export function memoryStore(): PositionStore {
  const m = new Map<string, string>();
  return {
    get: (s) => m.get(s),
    set: (s, c) => void m.set(s, c),
    delete: (s) => void m.delete(s),
  };
}

/** The part of the standard WebSocket API this client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** A WebSocket constructor: the global one, or e.g. the `ws` package's in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface ClientOptions {
  /** The kedge WebSocket URL, e.g. "wss://kedge.example.com/v1/ws". */
  url: string;
  /**
   * A token, or a function called before every (re)connect that returns one
   * (refresh it there). Sent as the `token` query parameter. With a
   * function, a 4502 close (credentials refused or expired) reconnects with
   * a new token instead of ending the client.
   */
  token?: string | (() => string | null | undefined | Promise<string | null | undefined>);
  /** The WebSocket constructor; defaults to the global WebSocket. */
  WebSocketImpl?: WebSocketConstructor;
  /** Where cursors are kept; defaults to memoryStore(). */
  positionStore?: PositionStore;
  /** The most publishes kept while disconnected (default 1000); more are rejected with queue_full. */
  maxQueue?: number;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** First reconnect delay in ms (default 250); it doubles up to maxReconnectDelay, with jitter. */
  reconnectDelay?: number;
  /** Longest reconnect delay in ms (default 10000). */
  maxReconnectDelay?: number;
  /** Send a protocol ping when nothing was heard for this many ms, and drop the connection when still nothing was heard after as long again (default 20000; 0: never). */
  pingInterval?: number;
  /** Give up a connection attempt after this many ms (default 10000). */
  connectTimeout?: number;
  /** Called on every state change; `code`/`reason` tell why a connection ended, `delay` when the next try is. */
  onState?: (state: ConnectionState, detail: { code?: number; reason?: string; delay?: number }) => void;
  /** Errors not tied to a call: a fatal close, a failed resubscribe without its own onError, handler, store and token failures. */
  onError?: (err: KedgeError) => void;
}

export interface SubscribeOptions {
  /** "guaranteed" (default) or "standard" (may drop under backpressure). */
  mode?: "guaranteed" | "standard";
  /** Receive the latest cached message first (default true). */
  snapshot?: boolean;
  /** The server could not recover the messages since the last position: some were missed. */
  onReset?: (reason: string) => void;
  /** The subscription failed after it had been live (a resubscribe was refused); it has ended. */
  onError?: (err: KedgeError) => void;
}

export interface PublishOptions {
  /** Kafka record headers. */
  headers?: Record<string, string>;
}

/** A handle on one subscribe call. */
export interface Subscription {
  readonly subject: string;
  /** Resolves once the server acknowledged the subscription; rejects with a KedgeError if it refused it. */
  readonly ready: Promise<void>;
  /** Ends this handle's subscription; resolves once the server acknowledged (at once when offline). */
  unsubscribe(): Promise<void>;
}

type Handler = (m: Message) => void;
type Frame = Record<string, any>;

interface Listener {
  handler: Handler;
  opts: SubscribeOptions;
  ok: () => void;
  fail: (e: KedgeError) => void;
}

/** One subscription on the wire, shared by every handle of its subject. */
interface Sub {
  subject: string;
  opts: SubscribeOptions;
  ls: Set<Listener>;
  loaded: boolean; // the stored cursor was read
  acked: boolean; // the server took it once (ready)
  live: boolean; // subscribed on the current connection
  mark: number; // when it last expected snapshots (its ack, a reset)
  epoch?: number;
  cur: Map<number, number>; // cursor: partition → offset, for resuming
  floor: Map<number, number>; // dedup guard: the cursor it resumed from
  last: Map<string, number>; // dedup guard: "partition/subject" → last offset delivered
}

interface Pub {
  req: Frame;
  ok: (position: string) => void;
  fail: (e: KedgeError) => void;
}

type Reply = (f: Frame | undefined) => void;

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function toB64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + (i + 1 < b.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < b.length ? B64[n & 63] : "=");
  }
  return s;
}

function fromB64(s: string): Uint8Array {
  s = s.replace(/=+$/, "");
  const out = new Uint8Array((s.length * 3) >> 2);
  for (let i = 0, n = 0, bits = 0, j = 0; i < s.length; i++) {
    n = (n << 6) | B64.indexOf(s[i]!);
    bits += 6;
    if (bits >= 8) out[j++] = (n >> (bits -= 8)) & 255;
  }
  return out;
}

/** Parses a cursor token "EPOCH-PARTITION-OFFSET[,…]" (offset -1: none yet). */
function parseCursor(tok: string): [number, Map<number, number>] | undefined {
  const m = new Map<number, number>();
  if (tok === "new") return [0, m]; // the topic did not exist yet: everything in it comes after
  let epoch: number | undefined;
  for (const part of tok.split(",")) {
    const r = /^(\d+)-(\d+)-(-1|\d+)$/.exec(part);
    if (!r || (epoch !== undefined && +r[1]! !== epoch) || m.has(+r[2]!)) return;
    epoch = +r[1]!;
    m.set(+r[2]!, +r[3]!);
  }
  return epoch === undefined ? undefined : [epoch, m];
}

function cursorToken(s: Sub): string | undefined {
  if (s.epoch === 0 && !s.cur.size) return "new";
  if (s.epoch === undefined || !s.cur.size) return;
  return [...s.cur.keys()]
    .sort((a, b) => a - b)
    .map((p) => `${s.epoch}-${p}-${s.cur.get(p)}`)
    .join(",");
}

/** Whether a subject matches a subscription's subject or pattern (+, final #). */
export function matches(filter: string, subject: string): boolean {
  if (filter === subject) return true;
  const f = filter.split("/");
  const s = subject.split("/");
  for (let i = 1; i < f.length; i++) {
    if (f[i] === "#" && i === f.length - 1) return true;
    if (i >= s.length || (f[i] !== "+" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

const OPEN = 1;

/**
 * A connection to kedge that reconnects by itself and resumes every
 * subscription from its last position. Create it with connect().
 */
export class KedgeClient {
  private o: ClientOptions;
  private Impl: WebSocketConstructor;
  private store: PositionStore;
  private ws?: WebSocketLike;
  private st: ConnectionState = "connecting";
  private subs = new Map<string, Sub>();
  private queue: Pub[] = [];
  private pending = new Map<number, Reply>();
  private id = 0;
  private marks = 0;
  private attempt = 0;
  private timer?: unknown;
  private pinger?: unknown;
  private heard = false;
  private fatal?: KedgeError; // why the client closed

  constructor(options: ClientOptions) {
    this.o = options;
    const Impl = options.WebSocketImpl ?? (globalThis as any).WebSocket;
    if (!Impl) throw new KedgeError("closed", "no WebSocket implementation: pass WebSocketImpl");
    this.Impl = Impl;
    this.store = options.positionStore ?? memoryStore();
    this.dial();
  }

  /** The connection's state now. */
  get state(): ConnectionState {
    return this.st;
  }

  /**
   * Subscribes to a subject or pattern. Works offline too: the subscription
   * is made when the client connects, and made again, from its last
   * position, after every reconnect. Subscribing twice to the same subject
   * shares one subscription (the first call's options win; a later handle
   * gets messages from then on, no snapshot).
   */
  subscribe(subject: string, handler: Handler, opts: SubscribeOptions = {}): Subscription {
    let l!: Listener;
    const ready = new Promise<void>((ok, fail) => (l = { handler, opts, ok, fail }));
    ready.catch(() => {}); // a caller that does not await ready gets no unhandled rejection
    let s = this.subs.get(subject);
    if (this.st === "closed") {
      l.fail(this.fatal!);
    } else if (s) {
      s.ls.add(l);
      if (s.acked) l.ok();
    } else {
      s = { subject, opts, ls: new Set([l]), loaded: false, acked: false, live: false, mark: 0, cur: new Map(), floor: new Map(), last: new Map() };
      this.subs.set(subject, s);
      this.load(s);
    }
    return {
      subject,
      ready,
      unsubscribe: () => this.unsubscribe(subject, l),
    };
  }

  /**
   * Publishes a message. Resolves with its position once the server
   * acknowledged it, which it does only after Kafka did. While the client is
   * not connected, publishes wait in a queue (at most maxQueue) and are sent
   * in order after the next connect.
   */
  publish(subject: string, payload: string | Uint8Array, opts: PublishOptions = {}): Promise<string> {
    return new Promise((ok, fail) => {
      const req: Frame = { op: "publish", subject };
      if (typeof payload === "string") req.payload = payload;
      else req.payload_b64 = toB64(payload);
      if (opts.headers) req.headers = opts.headers;
      const p: Pub = { req, ok, fail };
      if (this.st === "closed") fail(this.fatal!);
      else if (this.st === "open") this.sendPub(p);
      else if (this.queue.length >= (this.o.maxQueue ?? 1000)) fail(new KedgeError("queue_full", `the offline queue holds ${this.queue.length} publishes (maxQueue)`, { subject }));
      else this.queue.push(p);
    });
  }

  /** Closes the connection for good: queued and unanswered publishes are rejected with code "closed". */
  close(): void {
    this.shut(new KedgeError("closed", "the client is closed"));
  }

  // ---- connection ----

  private set(st: ConnectionState, detail: { code?: number; reason?: string; delay?: number } = {}) {
    this.st = st;
    this.call(this.o.onState, st, detail);
  }

  private async dial() {
    let url = this.o.url;
    const t = this.o.token;
    if (t) {
      let tok: string | null | undefined;
      try {
        tok = typeof t === "function" ? await t() : t;
      } catch (e) {
        this.report(new KedgeError("token_failed", "the token provider failed", { cause: e }));
        return this.retry(undefined, "token provider failed");
      }
      if (this.st === "closed") return;
      if (tok) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(tok);
    }
    let ws: WebSocketLike;
    try {
      ws = new this.Impl(url);
    } catch (e) {
      return this.retry(undefined, String(e));
    }
    this.ws = ws;
    ws.onopen = () => this.opened(ws);
    ws.onmessage = (e) => {
      this.heard = true;
      if (typeof e.data === "string") this.frame(e.data);
    };
    ws.onclose = (e) => this.lost(ws, e.code, e.reason);
    ws.onerror = () => {}; // a close event follows
    this.timer = setTimeout(() => this.drop(ws, "connect timeout"), this.o.connectTimeout ?? 10000);
  }

  private opened(ws: WebSocketLike) {
    if (ws !== this.ws) return;
    clearTimeout(this.timer as any);
    this.attempt = 0;
    this.st = "open"; // resubscribe and flush the queue before onState can publish
    for (const s of this.subs.values()) if (s.loaded) this.sendSub(s);
    const q = this.queue;
    this.queue = [];
    for (const p of q) this.sendPub(p);
    const every = this.o.pingInterval ?? 20000;
    if (every > 0) {
      let waiting = false;
      this.heard = false;
      this.pinger = setInterval(() => {
        if (this.heard) waiting = false;
        else if (waiting) return this.drop(ws, "keepalive timeout");
        else {
          waiting = true;
          this.send({ op: "ping", id: ++this.id });
        }
        this.heard = false;
      }, every);
    }
    this.set("open"); // last: onState may close the client
  }

  /** Gives up on a connection that does not answer: reconnect at once, without waiting for its close. */
  private drop(ws: WebSocketLike, why: string) {
    try {
      ws.close();
    } catch {}
    this.lost(ws, 1006, why);
  }

  private lost(ws: WebSocketLike, code: number, reason: string) {
    if (ws !== this.ws) return;
    // 4500–4999 (and 1009, the same as 4501) mean "not without changing
    // something": a token provider can change the credentials (4502).
    if (code === 1009 || (code >= 4500 && code < 5000 && !(code === 4502 && typeof this.o.token === "function"))) {
      return this.shut(new KedgeError("closed", `the server closed the connection with code ${code}${reason ? ": " + reason : ""}`, { closeCode: code }), { code, reason });
    }
    this.detach();
    this.answerPending();
    this.retry(code, reason);
  }

  /** Ends the requests waiting for an answer on a connection that ended. */
  private answerPending() {
    const pending = this.pending;
    this.pending = new Map();
    for (const r of pending.values()) r(undefined);
  }

  private retry(code: number | undefined, reason: string) {
    if (this.st === "closed") return;
    if (this.o.reconnect === false) {
      return this.shut(new KedgeError("closed", `the connection ended (${code ?? "no connection"}${reason ? ": " + reason : ""}) and reconnect is off`, { closeCode: code }), { code, reason });
    }
    const base = this.o.reconnectDelay ?? 250;
    const delay = Math.round(Math.min(this.o.maxReconnectDelay ?? 10000, base * 2 ** this.attempt++) * (0.5 + Math.random() / 2));
    this.set("reconnecting", { code, reason, delay });
    this.timer = setTimeout(() => this.dial(), delay);
  }

  private detach() {
    const ws = this.ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    this.ws = undefined;
    clearTimeout(this.timer as any);
    clearInterval(this.pinger as any);
    for (const s of this.subs.values()) s.live = false;
  }

  private shut(err: KedgeError, detail: { code?: number; reason?: string } = {}) {
    if (this.st === "closed") return;
    const ws = this.ws;
    this.detach();
    this.st = "closed";
    this.fatal = err;
    if (ws) {
      try {
        ws.close(1000);
      } catch {}
    }
    this.answerPending();
    for (const p of this.queue) p.fail(err);
    this.queue = [];
    for (const s of this.subs.values()) for (const l of s.ls) l.fail(err);
    this.set("closed", detail);
    if (err.closeCode !== undefined) this.report(err);
  }

  private send(f: Frame): boolean {
    const ws = this.ws;
    if (this.st !== "open" || !ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  /** Sends a request; reply gets its answer, or undefined if the connection ends first. */
  private request(f: Frame, reply: Reply): boolean {
    const id = ++this.id;
    if (!this.send({ ...f, id })) return false;
    this.pending.set(id, reply);
    return true;
  }

  private sendPub(p: Pub) {
    const sent = this.request(p.req, (f) => {
      if (!f) p.fail(this.fatal ?? new KedgeError("connection_lost", "the connection ended before the server answered: the message may or may not be in Kafka", { subject: p.req.subject }));
      else if (f.op === "ack") p.ok(f.position);
      else if (f.code === "shutting_down" && !this.fatal) this.queue.push(p); // refused before Kafka: send again after reconnect
      else p.fail(err(f));
    });
    if (!sent) {
      this.queue.push(p);
    }
  }

  // ---- subscriptions ----

  /** Reads the subscription's stored cursor, then subscribes (at once when the store is synchronous). */
  private load(s: Sub) {
    const failed = (e: unknown) => {
      this.report(new KedgeError("store_failed", "the position store failed to get " + s.subject, { subject: s.subject, cause: e }));
      this.loaded(s, undefined);
    };
    try {
      const r = this.store.get(s.subject);
      if (r && typeof (r as Promise<unknown>).then === "function") (r as Promise<string | null | undefined>).then((t) => this.loaded(s, t), failed);
      else this.loaded(s, r as string | null | undefined);
    } catch (e) {
      failed(e);
    }
  }

  private loaded(s: Sub, tok: string | null | undefined) {
    const c = tok ? parseCursor(tok) : undefined;
    if (c) [s.epoch, s.cur] = c;
    else if (tok) this.storeOp("delete", s.subject);
    s.loaded = true;
    if (this.subs.get(s.subject) === s) this.sendSub(s);
  }

  private sendSub(s: Sub) {
    const req: Frame = { op: "subscribe", subjects: [s.subject] };
    if (s.opts.mode) req.mode = s.opts.mode;
    if (s.opts.snapshot === false) req.snapshot = false;
    const tok = cursorToken(s);
    if (tok) req.positions = { [s.subject]: tok };
    s.floor = new Map(tok ? s.cur : undefined); // the server sends only what comes after
    s.last = new Map();
    this.request(req, (f) => {
      if (!f || this.subs.get(s.subject) !== s) return; // resent on reconnect; or unsubscribed meanwhile
      if (f.op === "ack") {
        const c = f.cursors?.[s.subject]; // a fresh subscription's exact start (none on a resume)
        if (c) this.start(s, c);
        s.live = true;
        s.mark = ++this.marks;
        if (!s.acked) {
          s.acked = true;
          for (const l of s.ls) l.ok();
        }
        return;
      }
      const e = err(f);
      if (e.code === "invalid_position" && tok) {
        this.forget(s, "the stored position was refused: " + e.message);
        return this.sendSub(s);
      }
      this.subs.delete(s.subject);
      for (const l of s.ls) {
        if (!s.acked) l.fail(e);
        else if (l.opts.onError) this.call(l.opts.onError, e);
        else this.report(e);
      }
    });
  }

  private async unsubscribe(subject: string, l: Listener): Promise<void> {
    const s = this.subs.get(subject);
    if (!s || !s.ls.delete(l) || s.ls.size) return;
    this.subs.delete(subject);
    this.storeOp("delete", subject);
    await new Promise<void>((ok) => {
      if (!this.request({ op: "unsubscribe", subjects: [subject] }, () => ok())) ok();
    });
  }

  /**
   * Starts a subscription's cursor over from one the server gave (a fresh
   * subscribe's ack, a reset): the messages that follow come after it.
   */
  private start(s: Sub, tok: unknown) {
    const c = typeof tok === "string" ? parseCursor(tok) : undefined;
    s.epoch = c?.[0];
    s.cur = c ? c[1] : new Map();
    s.floor = new Map(s.cur);
    s.last = new Map();
    if (c) this.storeOp("set", s.subject, tok as string);
  }

  /**
   * Takes the start cursor the server gives a subscription whose ack had
   * none (its topic did not exist yet), keeping partitions already passed.
   */
  private adopt(s: Sub, tok: unknown) {
    const c = typeof tok === "string" ? parseCursor(tok) : undefined;
    if (!c || (s.epoch !== undefined && s.epoch !== 0 && s.epoch !== c[0])) return;
    s.epoch = c[0];
    for (const [p, o] of c[1]) {
      if ((s.cur.get(p) ?? -2) < o) s.cur.set(p, o);
      if ((s.floor.get(p) ?? -2) < o) s.floor.set(p, o);
    }
    this.storeOp("set", s.subject, cursorToken(s));
  }

  /** The history since the subscription's cursor is lost: start over from tok (or nothing) and say so. */
  private forget(s: Sub, reason: string, tok?: unknown) {
    this.start(s, tok);
    s.mark = ++this.marks; // a reset is followed by snapshots
    if (!tok) this.storeOp("delete", s.subject);
    for (const l of s.ls) this.call(l.opts.onReset, reason);
  }

  // ---- frames ----

  private frame(data: string) {
    let f: Frame;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (f.op === "message") this.message(f);
    else if (f.op === "reset") {
      const s = this.subs.get(f.subject);
      if (s) this.forget(s, String(f.reason), f.cursor);
    } else if (f.op === "cursor") {
      const s = this.subs.get(f.subject);
      if (s) this.adopt(s, f.cursor);
    } else {
      const r = this.pending.get(f.id);
      if (r) {
        this.pending.delete(f.id);
        r(f);
      }
    }
  }

  /**
   * A message frame does not say which subscription it is for (a subject
   * and a pattern that both match get one frame each). A snapshot goes to
   * the matching subscription that most recently expected snapshots (its
   * ack, a reset). Any other message goes to every matching subscription
   * that does not have it yet: its offset is above both the cursor the
   * subscription resumed from and the last offset it got of that subject in
   * that partition (same epoch). So a repeated message is dropped, and the
   * second frame of a message two subscriptions share is too.
   */
  private message(f: Frame) {
    const pos = /^(\d+)-(\d+)-(\d+)$/.exec(f.position);
    if (!pos) return;
    const [e, p, o] = [+pos[1]!, +pos[2]!, +pos[3]!];
    const key = p + f.subject;
    const snap = !!f.snapshot;
    let to: Sub[] = [];
    for (const s of this.subs.values()) {
      if (!s.live || !matches(s.subject, f.subject)) continue;
      if (snap) {
        if (s.opts.snapshot !== false && (!to[0] || s.mark > to[0].mark)) to = [s];
      } else if (s.epoch !== e || o > Math.max(s.floor.get(p) ?? -1, s.last.get(key) ?? -1)) to.push(s);
    }
    if (!to.length) return;
    const m: Message = {
      subject: f.subject,
      payload: typeof f.payload === "string" ? f.payload : fromB64(f.payload_b64 ?? ""),
      position: f.position,
      snapshot: snap,
      time: f.time,
      headers: f.headers ?? {},
    };
    if (f.headers_b64) {
      m.binaryHeaders = {};
      for (const k in f.headers_b64) m.binaryHeaders[k] = fromB64(f.headers_b64[k]);
    }
    for (const s of to) {
      for (const l of s.ls) this.call(l.handler, m);
      if (snap) continue; // a snapshot is not part of the cursor's sequence
      if (s.epoch !== e) this.start(s, undefined);
      s.epoch = e;
      if (s.last.size >= 10000) s.last.clear(); // bounded: forgetting weakens only the dedup of overlapping subscriptions
      s.last.set(key, o);
      const before = s.cur.get(p);
      if (before === undefined || before < o) {
        s.cur.set(p, o);
        this.storeOp("set", s.subject, cursorToken(s));
      }
    }
  }

  // ---- helpers ----

  private storeOp(op: "set" | "delete", subject: string, tok?: string) {
    try {
      const r = op === "set" ? this.store.set(subject, tok!) : this.store.delete(subject);
      if (r && typeof (r as Promise<void>).catch === "function") (r as Promise<void>).catch((e) => this.storeFailed(op, subject, e));
    } catch (e) {
      this.storeFailed(op, subject, e);
    }
  }

  private storeFailed(op: string, subject: string, e: unknown) {
    this.report(new KedgeError("store_failed", `the position store failed to ${op} ${subject}`, { subject, cause: e }));
  }

  private call<A extends unknown[]>(fn: ((...a: A) => void) | undefined, ...a: A) {
    if (!fn) return;
    try {
      fn(...a);
    } catch (e) {
      if ((fn as unknown) !== this.o.onError) this.report(new KedgeError("handler_failed", "a handler threw: " + e, { cause: e }));
    }
  }

  private report(e: KedgeError) {
    this.call(this.o.onError, e);
  }
}

function err(f: Frame): KedgeError {
  return new KedgeError(f.code ?? "internal", f.message ?? "", { subject: f.subject });
}

/** Creates a client and starts connecting. */
export function connect(options: ClientOptions): KedgeClient {
  return new KedgeClient(options);
}
