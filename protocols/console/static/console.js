// kedge console: subscribe over Server-Sent Events or WebSocket, watch
// messages, publish. No framework, no build step; everything a message
// carries is shown with textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_ROWS = 500; // the table keeps the newest rows only
  const MAX_LOG = 200;
  const wsPath = document.querySelector('meta[name="kedge-ws-path"]').content || "/v1/ws";

  let conn = null; // {kind: "sse"|"ws", close(), publish?(msg)}
  let count = 0;

  function setStatus(state, text) {
    const s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  function log(kind, text) {
    const li = document.createElement("li");
    li.className = kind;
    li.textContent = new Date().toLocaleTimeString() + "  " + text;
    const ol = $("log");
    ol.prepend(li);
    while (ol.children.length > MAX_LOG) ol.lastChild.remove();
  }

  function subjects() {
    return $("subjects").value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
  }

  // showMessage adds a row for a message object (the fields of an SSE
  // message event's data or a WebSocket message frame).
  function showMessage(m) {
    const snapshot = m.snapshot === true;
    const tr = document.createElement("tr");
    tr.className = snapshot ? "snapshot" : "message";
    const payload = m.payload !== undefined ? m.payload : "base64:" + (m.payload_b64 || "");
    tr.dataset.subject = m.subject;
    tr.dataset.payload = payload;
    tr.dataset.position = m.position || "";
    const cells = [snapshot ? "snapshot" : "live", m.subject, payload, m.position || "", m.time || ""];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.className = ["kind", "subject", "payload", "position", "time"][i];
      td.textContent = text;
      if (i === 2 && m.headers) td.title = "headers: " + JSON.stringify(m.headers);
      tr.append(td);
    });
    const body = $("messages");
    body.prepend(tr);
    while (body.children.length > MAX_ROWS) body.lastChild.remove();
    $("count").textContent = String(++count);
  }

  function connected(kind) {
    $("connect").disabled = true;
    $("disconnect").disabled = false;
    $("pub-via").textContent = kind === "ws" ? "via the WebSocket (publish op)" : "via POST /v1/publish";
  }

  function disconnect() {
    if (conn) conn.close();
    conn = null;
    $("connect").disabled = false;
    $("disconnect").disabled = true;
    $("pub-via").textContent = "via POST /v1/publish";
    setStatus("closed", "not connected");
  }

  function parse(data) {
    try { return JSON.parse(data); } catch (e) { return null; }
  }

  function connectSSE(subs) {
    const q = new URLSearchParams();
    subs.forEach((s) => q.append("subject", s));
    q.set("mode", $("mode").value);
    q.set("snapshot", $("snapshot").checked ? "true" : "false");
    const es = new EventSource("/v1/sse?" + q.toString());
    setStatus("connecting", "connecting over SSE…");
    es.addEventListener("ready", (e) => {
      const d = parse(e.data) || {};
      setStatus("open", "SSE: " + (d.subjects || subs).join(", ") + (d.resumed ? " (resumed)" : ""));
      log("info", (d.resumed ? "resumed " : "subscribed ") + (d.subjects || subs).join(", "));
    });
    for (const type of ["message", "snapshot"]) {
      es.addEventListener(type, (e) => { const m = parse(e.data); if (m) showMessage(m); });
    }
    es.addEventListener("reset", (e) => {
      const d = parse(e.data) || {};
      log("reset", "reset " + d.subject + ": " + d.reason);
    });
    es.addEventListener("error", (e) => {
      // The same event type carries the server's error events (with data)
      // and EventSource's own connection errors (without).
      if (e.data) {
        const d = parse(e.data) || {};
        log("error", "server ended the stream: " + d.code + ": " + d.message);
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        setStatus("error", "SSE refused (check the subjects: GET /v1/sse answers with a JSON error)");
        log("error", "the stream was refused; " + "try the URL in a new tab to see why");
        checkRefusal("/v1/sse?" + q.toString());
      } else {
        setStatus("connecting", "SSE connection lost, reconnecting with Last-Event-ID…");
      }
    });
    conn = { kind: "sse", close: () => es.close() };
    connected("sse");
  }

  // checkRefusal shows the JSON error of a refused stream request.
  async function checkRefusal(url) {
    try {
      const ctl = new AbortController();
      const r = await fetch(url, { signal: ctl.signal });
      if (r.ok) { ctl.abort(); return; }
      const d = await r.json();
      log("error", d.code + ": " + d.message);
      setStatus("error", "refused: " + d.code);
    } catch (e) { /* the network is down: nothing more to say */ }
  }

  // WebSocket mode uses @kedge/client (kedge-client.js, built from
  // protocols/ws/js): it reconnects, resumes each subscription from its last
  // position, and resolves a publish only on kedge's ack (after Kafka's).
  function connectWS(subs) {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + wsPath;
    setStatus("connecting", "connecting over WebSocket…");
    const client = kedge.connect({
      url,
      onState: (state, d) => {
        if (!conn || conn.client !== client) return;
        if (state === "open") setStatus("open", "WebSocket: " + subs.join(", "));
        else if (state === "reconnecting") {
          log("info", "WebSocket closed" + (d.code ? " (" + d.code + (d.reason ? " " + d.reason : "") + ")" : "") + "; reconnecting");
          setStatus("connecting", "reconnecting over WebSocket…");
        } else if (state === "closed") setStatus("closed", "WebSocket closed" + (d.code ? " (" + d.code + ")" : ""));
      },
      onError: (e) => log("error", e.code + ": " + e.message),
    });
    const opts = {
      mode: $("mode").value, snapshot: $("snapshot").checked,
      onReset: (reason) => log("reset", "reset: " + reason),
      onError: (e) => log("error", e.code + ": " + e.message),
    };
    for (const subject of subs) {
      const show = (m) => showMessage(typeof m.payload === "string" ? m
        : Object.assign({}, m, { payload: "(binary, " + m.payload.length + " bytes)" }));
      client.subscribe(subject, show, opts).ready.then(
        () => log("info", "subscribed " + subject),
        (e) => { setStatus("error", "subscribe refused: " + e.code); log("error", e.code + ": " + e.message); });
    }
    conn = {
      kind: "ws", client,
      close: () => client.close(),
      publish: (msg) => client.publish(msg.subject, msg.payload, { headers: msg.headers }).then(
        (position) => ({ op: "ack", position }),
        (e) => ({ op: "error", code: e.code, message: e.message })),
    };
    connected("ws");
  }

  function headers() {
    const out = {};
    for (const line of $("pub-headers").value.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    return Object.keys(out).length ? out : undefined;
  }

  function showResult(ok, text) {
    const p = $("pub-result");
    p.dataset.status = ok ? "ok" : "error";
    p.textContent = text;
  }

  async function publish(ev) {
    ev.preventDefault();
    const msg = { subject: $("pub-subject").value.trim(), payload: $("pub-payload").value, headers: headers() };
    $("publish").disabled = true;
    try {
      if (conn && conn.publish) {
        const f = await conn.publish(msg);
        if (f && f.op === "ack") { showResult(true, "acknowledged by Kafka at " + f.position); return; }
        if (f) { showResult(false, f.code + ": " + f.message); return; }
      }
      const r = await fetch("/v1/publish", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(msg),
      });
      const d = await r.json();
      if (r.ok) showResult(true, "acknowledged by Kafka at " + d.position);
      else showResult(false, d.code + ": " + d.message);
    } catch (e) {
      showResult(false, "request failed: " + e);
    } finally {
      $("publish").disabled = false;
    }
  }

  $("subscribe-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const subs = subjects();
    if (subs.length === 0) { log("error", "give at least one subject"); return; }
    if (conn) disconnect();
    if ($("transport").value === "ws") connectWS(subs); else connectSSE(subs);
  });
  $("disconnect").addEventListener("click", disconnect);
  $("clear").addEventListener("click", () => { $("messages").replaceChildren(); count = 0; $("count").textContent = "0"; });
  $("publish-form").addEventListener("submit", publish);

  // ?subject=…&transport=… in the page's URL fills the form and connects.
  const params = new URLSearchParams(location.search);
  if (params.getAll("subject").length) {
    $("subjects").value = params.getAll("subject").join("\n");
    if (params.get("transport") === "ws") $("transport").value = "ws";
    $("subscribe-form").requestSubmit();
  }
})();
