// The kiosk page: one WebSocket to the server that served it, the token from #token= (kept for this
// tab only), reconnection with backoff after the server goes away. No request leaves this origin.
// Each window's first explanation (its most-seen person's) adds a mark to the rolling 60 s timeline (label
// colour, height = confidence) and fills the per-source bars (each evidence source's distribution over the
// labels); every person in view has a card with their label, and whether the voice is theirs.
"use strict";

const $ = (id) => document.getElementById(id);
let token = null;
let socket = null;
let retryMs = 500;
let paused = false;
let admin = false;
let streaming = "";
let colours = {};  // label -> colour, from /v1/info
let recent = [];  // the explanations of the last SPAN_S seconds: {slot: [t0, t1], label, confidence, outcome}
let people = {};  // face id -> the person's latest explanation: {label, confidence, speaking, t_end}
let shownWindow = null;  // t_start of the window whose first explanation the panel shows
const PERSON_S = 5;  // a card goes when its person has not been explained for this long
const SPAN_S = 60;
const SVG_NS = "http://www.w3.org/2000/svg";
const colour = (label) => colours[label] || "#c8c8c8";

function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("edge-xemo-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
  }
  return sessionStorage.getItem("edge-xemo-token");
}

function setState(text, kind) {
  const el = $("state");
  el.textContent = text;
  el.className = "state " + kind;
}

function fillList(el, items) {
  el.replaceChildren(...(items.length ? items : ["-"]).map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

function showCues(e) {
  fillList($("visual"), (e.visual_cues || []).map((c) => c.phrase));
  fillList($("auditory"), (e.auditory_cues || []).map((c) => c.phrase));
  const canvas = $("faces");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const size = e.frame_size;
  if (!size) return;
  canvas.height = Math.round(canvas.width * size[1] / size[0]);
  const k = canvas.width / size[0];
  ctx.strokeStyle = "#4cc38a";
  ctx.lineWidth = 3;
  for (const f of e.faces || []) {
    const [x0, y0, x1, y1] = f.box;
    ctx.strokeRect(x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k);
  }
  const lat = e.latency_ms || {};
  if (lat.capture_to_cues !== undefined) $("latency").textContent = `cues ${Math.round(lat.capture_to_cues)} ms after capture`;
}

function remember(e) {
  const emotion = e.emotion || {};
  const last = recent[recent.length - 1];
  if (last && e.t_end < last.t_end - 1) recent = [];  // a new run: its clock starts again
  // the window stands for its middle `hop` seconds, hop = the step from the previous window
  const hop = last && e.t_end > last.t_end && e.t_end - last.t_end < 10 ? e.t_end - last.t_end : e.t_end - e.t_start;
  const middle = (e.t_start + e.t_end) / 2;
  recent.push({ t_end: e.t_end, slot: [middle - hop / 2, middle + hop / 2], label: emotion.label,
                 confidence: emotion.confidence || 0, outcome: emotion.outcome || "confident" });
  recent = recent.filter((h) => h.slot[1] > e.t_end - SPAN_S);
}

function drawTimeline() {
  const marks = $("marks");
  const now = recent.length ? recent[recent.length - 1].t_end : 0;
  const x = (t) => Math.max(0, 10 * (t - now + SPAN_S));
  marks.replaceChildren(...recent.filter((h) => h.label).flatMap((h) => {
    const rect = (y, height, fill, cls) => {
      const r = document.createElementNS(SVG_NS, "rect");
      r.setAttribute("x", x(h.slot[0]));
      r.setAttribute("width", Math.max(0.5, x(h.slot[1]) - x(h.slot[0])));
      r.setAttribute("y", y);
      r.setAttribute("height", height);
      r.setAttribute("fill", fill);
      r.setAttribute("class", cls);
      if (h.outcome !== "confident" && cls !== "hatch") r.setAttribute("fill-opacity", 0.35);
      r.dataset.label = h.label;
      return r;
    };
    const height = 70 * h.confidence;
    const out = [rect(85 - height, height, colour(h.label), "win " + h.outcome)];
    if (h.outcome === "sources_disagree") out.push(rect(85 - height, height, "url(#hatch)", "hatch"));
    out.push(rect(88, 12, colour(h.label), "band"));
    return out;
  }));
}

function showSources(e) {
  const rows = Object.entries(e.evidence || {}).flatMap(([source, ev]) => {
    const dist = Object.entries(ev.distribution || {}).filter(([, p]) => p > 0).sort((a, b) => b[1] - a[1]);
    const name = document.createElement("span");
    name.textContent = ev.weight === undefined || ev.weight === null ? source : `${source} ×${ev.weight}`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.dataset.source = source;
    bar.replaceChildren(...dist.map(([label, p]) => {
      const seg = document.createElement("span");
      seg.style.width = `${100 * p}%`;
      seg.style.background = colour(label);
      seg.title = `${label} ${p.toFixed(2)}`;
      return seg;
    }));
    const top = document.createElement("span");
    top.className = "top";
    top.textContent = dist.length ? `${dist[0][0]} ${dist[0][1].toFixed(2)}` : "-";
    return [name, bar, top];
  });
  $("sources").replaceChildren(...rows);
}

function showExplanation(e) {
  const emotion = e.emotion || {};
  $("label").textContent = emotion.label || "-";
  const conf = emotion.confidence !== undefined ? `confidence ${emotion.confidence.toFixed(2)}` : "";
  $("confidence").textContent = emotion.outcome && emotion.outcome !== "confident"
    ? `${conf}; unsure: ${emotion.reason || emotion.outcome}` : conf;
  $("evidence").textContent = (emotion.carried_by || []).length ? "from " + emotion.carried_by.join("; ") : "";
  $("explanation").textContent = e.text || "";
  streaming = "";
  showSources(e);
  remember(e);
  drawTimeline();
  const lat = e.latency_ms || {};
  if (lat.window_to_explanation !== undefined) {
    $("latency").textContent = `explanation ${Math.round(lat.window_to_explanation)} ms after its window`;
  }
}

function showPeople(e) {
  const emotion = e.emotion || {};
  const speaker = (e.speaker || {}).face_id;
  people[e.face_id] = { label: emotion.label || "-", confidence: emotion.confidence || 0, t_end: e.t_end,
                        speaking: e.face_id !== null && e.face_id !== undefined && speaker === e.face_id };
  for (const [id, p] of Object.entries(people)) if (p.t_end < e.t_end - PERSON_S || p.t_end > e.t_end + 1) delete people[id];
  $("people").replaceChildren(...Object.entries(people).map(([id, p]) => {
    const card = document.createElement("div");
    card.className = "person";
    card.dataset.face = id;
    card.style.borderColor = colour(p.label);
    card.textContent = `${id === "null" ? "no face" : "person " + id}: ${p.label} ${p.confidence.toFixed(2)}`
      + (p.speaking ? " · speaking" : "");
    return card;
  }));
}

function onEvent(e) {
  $("seq").textContent = `#${e.seq}`;
  if (e.type === "cues") showCues(e);
  else if (e.type === "token") { streaming += e.text; $("explanation").textContent = streaming; }
  else if (e.type === "explanation") {
    showPeople(e);
    if (e.t_start !== shownWindow) { shownWindow = e.t_start; showExplanation(e); }  // the window's first person
  }
  else if (e.type === "status" && (e.code === "paused" || e.code === "resumed")) setPaused(e.code === "paused");
  else if (e.type === "status" && e.code === "server_stopping") setState("server stopping", "off");
}

function setPaused(value) {
  paused = value;
  $("pause").textContent = paused ? "Resume analysis" : "Pause analysis";
  setState(paused ? "paused" : "analysing", paused ? "paused" : "live");
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/v1/ws`);
  socket.onmessage = (msg) => {
    const m = JSON.parse(msg.data);
    if (m.seq !== undefined) return onEvent(m);  // events carry seq; protocol messages do not
    if (m.type === "hello") socket.send(JSON.stringify({ type: "auth", token: token || "" }));
    else if (m.type === "auth_ok") {
      retryMs = 500;
      admin = m.scopes.includes("admin");
      $("pause").disabled = !admin;
      // the label colours first, so that the first explanation is drawn in them
      const ws = socket;
      fetchInfo().then(() => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(
        { type: "subscribe", types: ["cues", "token", "explanation", "status", "error"], max_hz: 5 })));
    } else if (m.type === "control_ok") setPaused(m.paused);
  };
  socket.onclose = (e) => {
    $("pause").disabled = true;
    if (e.code === 4401) {
      setState("token refused", "off");
      sessionStorage.removeItem("edge-xemo-token");
      $("login").hidden = false;
      return;
    }
    setState("reconnecting", "off");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 8000);
  };
}

async function fetchInfo() {
  try {
    const r = await fetch("/v1/info", { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (!r.ok) return;
    const info = await r.json();
    setPaused(info.paused);
    colours = info.label_colours || {};
  } catch (err) { /* the socket's close handler reconnects */ }
}

$("pause").addEventListener("click", () => {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "control", action: paused ? "resume" : "pause" }));
  }
});

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("edge-xemo-token", token);
  $("login").hidden = true;
  connect();
});

token = takeToken();
connect();
