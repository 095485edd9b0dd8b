// Switchboard dashboard: plain JavaScript, no build step, no library.
// Every piece of agent or user text goes into the page as text (textContent), never as HTML;
// the markdown renderer builds DOM nodes for a tiny subset (paragraphs, headings, lists,
// code, bold, italics, http(s) links) and escapes everything else by construction.
"use strict";

const S = {
  csrf: null,
  lastId: 0,
  es: null,
  retry: 0,
  view: null,
  overview: null,
  pair: null, // {from, to}
  open: new Map(), // tell id -> {es, list}
  timers: new Set(),
  refreshTimer: null,
};

// ---------- DOM helpers ----------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
const fmtCost = (v) => "$" + (Number(v) || 0).toFixed(4);
const fmtInt = (v) => (Number(v) || 0).toLocaleString("en-US");
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.round(s % 60) + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
const stateBadge = (s) => h("span", { class: "state state-" + s, text: s });

function toast(msg, bad) {
  const b = $("banner");
  b.textContent = msg;
  b.hidden = false;
  b.dataset.kind = bad ? "error" : "info";
  clearTimeout(toast.t);
  toast.t = setTimeout(() => { if (b.dataset.kind !== "conn") b.hidden = true; }, 6000);
}

// ---------- safe markdown ----------
function inline(text) {
  // Splits into code spans, links, bold and italics; everything else is text nodes.
  const out = [];
  const re = /(`[^`\n]+`)|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|\*\*([^*\n]+)\*\*|\*([^*\n]+)\*/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) out.push(h("code", { text: m[1].slice(1, -1) }));
    else if (m[2]) out.push(h("a", { href: m[3], rel: "noopener noreferrer", target: "_blank", text: m[2] }));
    else if (m[4]) out.push(h("strong", { text: m[4] }));
    else if (m[5]) out.push(h("em", { text: m[5] }));
    last = re.lastIndex;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

function markdown(src) {
  const root = h("div", { class: "md" });
  const lines = String(src || "").replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) root.append(h("p", {}, inline(para.join("\n"))));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      flush();
      const code = [];
      i++;
      while (i < lines.length && !/^```/.test(lines[i])) code.push(lines[i++]);
      i++;
      root.append(h("pre", {}, h("code", { text: code.join("\n") })));
      continue;
    }
    const head = /^(#{1,6})\s+(.*)$/.exec(line);
    if (head) {
      flush();
      root.append(h("h" + Math.min(6, head[1].length + 3), {}, inline(head[2])));
      i++;
      continue;
    }
    if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      flush();
      const ordered = /^\s*\d+\./.test(line);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length && /^\s*([-*]|\d+\.)\s+/.test(lines[i])) {
        list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""))));
        i++;
      }
      root.append(list);
      continue;
    }
    if (line.trim() === "") flush();
    else para.push(line);
    i++;
  }
  flush();
  return root;
}

// ---------- API ----------
async function api(op, body) {
  const headers = { "Content-Type": "application/json" };
  if (S.csrf) headers["X-Switchboard-CSRF"] = S.csrf;
  const r = await fetch("/api/" + op, {
    method: "POST", headers, body: JSON.stringify(body || {}), credentials: "same-origin",
  });
  if (r.status === 401) {
    showLogin();
    throw new Error("not logged in");
  }
  const text = await r.text();
  let v;
  try { v = JSON.parse(text); } catch (e) { v = { error: text.trim() }; }
  if (!r.ok) throw new Error(v.error || r.status + " " + r.statusText);
  return v;
}

async function act(label, op, body, after) {
  try {
    const v = await api(op, body);
    toast(label + ": done");
    if (after) after(v);
    scheduleRefresh(0);
    return v;
  } catch (e) {
    toast(label + " failed: " + e.message, true);
    return null;
  }
}

// ---------- login ----------
function showLogin() {
  $("login").hidden = false;
  $("main").hidden = true;
  $("login-token").focus();
}

async function session() {
  try {
    const r = await fetch("/dashboard/session", { credentials: "same-origin" });
    if (r.ok) S.csrf = (await r.json()).csrf || null;
  } catch (e) { /* offline: the event stream says so */ }
}

async function login(ev) {
  ev.preventDefault();
  const token = $("login-token").value;
  $("login-token").value = "";
  const r = await fetch("/dashboard/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }), credentials: "same-origin",
  });
  if (!r.ok) {
    $("login-error").textContent = (await r.text()).trim();
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  await session();
  connect();
  render();
}

// ---------- live events ----------
const TYPES = ["tell_queued", "tell_delivered", "tell_answered", "tell_failed", "tell_cancelled",
  "agent_spawning", "agent_ready", "agent_stopped", "process_state", "compaction_begin",
  "compaction_end", "approval_requested", "approval_decided", "approval_expired", "text",
  "tool_use", "tool_result", "usage", "agent_status", "activity_truncated"];

function setConn(up, why) {
  const c = $("conn");
  c.textContent = up ? "live" : "disconnected" + (why ? " – " + why : "");
  c.classList.toggle("down", !up);
  c.setAttribute("data-state", up ? "live" : "disconnected");
}

function connect() {
  if (S.es) S.es.close();
  // From the next event on; after a reconnect, from the last one seen (no gap, no repeat).
  const es = new EventSource("/events" + (S.lastId ? "?after=" + S.lastId : ""), { withCredentials: true });
  S.es = es;
  es.onopen = () => {
    S.retry = 0;
    setConn(true);
    scheduleRefresh(0);
  };
  es.onerror = () => {
    setConn(false, "reconnecting");
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. the server answered an error while restarting): try again.
      const wait = Math.min(10000, 500 * 2 ** S.retry++);
      setTimeout(() => { if (S.es === es) connect(); }, wait);
    }
  };
  for (const t of TYPES) es.addEventListener(t, (m) => onEvent(JSON.parse(m.data), m.lastEventId));
}

function onEvent(ev, lastEventId) {
  const id = Number(lastEventId || ev.id || 0);
  if (id > S.lastId) S.lastId = id;
  const t = ev.type;
  if (t.startsWith("tell_") || t.startsWith("agent_") || t === "process_state" ||
      t.startsWith("compaction_") || t.startsWith("approval_") || t === "usage") {
    scheduleRefresh(300);
  }
}

// At most one refresh per `ms` while events keep coming (a busy agent must not postpone it
// forever); `0` refreshes now.
function scheduleRefresh(ms) {
  if (S.refreshTimer && ms > 0) return;
  clearTimeout(S.refreshTimer);
  S.refreshTimer = setTimeout(() => { S.refreshTimer = null; refresh(); }, ms);
}

async function refresh() {
  try {
    await render(true);
  } catch (e) { /* shown by render */ }
}

// ---------- views ----------
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "pair" && parts[1] && parts[2]) return { view: "pair", from: parts[1], to: parts[2] };
  if (parts[0] === "approvals") return { view: "approvals" };
  if (parts[0] === "stats") return { view: "stats" };
  return { view: "overview" };
}

let rendering = null;
async function render(quiet) {
  const r = route();
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === r.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const token = {};
  rendering = token;
  let node;
  try {
    if (r.view === "pair") node = await pairView(r.from, r.to);
    else if (r.view === "approvals") node = await approvalsView();
    else if (r.view === "stats") node = await statsView();
    else node = await overviewView();
  } catch (e) {
    if (e.message === "not logged in") return;
    node = h("p", { class: "error", role: "alert", text: "Cannot load this view: " + e.message });
  }
  if (rendering !== token) return;
  const main = $("main");
  // Keep what the person is typing across live refreshes.
  const same = quiet && S.hash === location.hash;
  const keep = same ? saveInputs(main) : null;
  main.replaceChildren(node);
  if (keep) restoreInputs(main, keep);
  S.hash = location.hash;
  if (!quiet) main.focus({ preventScroll: true });
  S.view = r.view;
  updateApprovalsCount();
}

function saveInputs(root) {
  const out = {};
  for (const el of root.querySelectorAll("input[id], textarea[id], select[id]")) out[el.id] = el.value;
  // Where the keyboard was: by id, else by the control's kind and label.
  const f = document.activeElement;
  if (f && root.contains(f) && f !== root) {
    out.__focus = f.id ? { id: f.id } : { tag: f.tagName, text: f.textContent, tell: f.dataset.tell || "" };
  }
  return out;
}
function restoreInputs(root, keep) {
  for (const el of root.querySelectorAll("input[id], textarea[id], select[id]")) {
    if (keep[el.id] !== undefined && keep[el.id] !== "") el.value = keep[el.id];
  }
  const k = keep.__focus;
  if (!k) return;
  const target = k.id ? document.getElementById(k.id)
    : [...root.querySelectorAll(k.tag)].find((e) => e.textContent === k.text && (e.dataset.tell || "") === k.tell);
  if (target) target.focus();
}

function card(k, v, id) {
  return h("div", { class: "card", id }, h("div", { class: "v", text: v }), h("div", { class: "k", text: k }));
}

function tellForm(teams, from, to) {
  const opts = (sel) => teams.map((t) => h("option", { value: t.name, selected: t.name === sel }, t.name));
  const form = h("form", { class: "inline", id: "tell-form", "aria-label": "Send a tell" },
    h("div", {}, h("label", { for: "tell-from", text: "As team" }), h("select", { id: "tell-from" }, opts(from))),
    h("div", {}, h("label", { for: "tell-to", text: "To team" }), h("select", { id: "tell-to" }, opts(to))),
    h("div", { class: "grow" }, h("label", { for: "tell-text", text: "Message" }),
      h("textarea", { id: "tell-text", required: true, rows: 3 })),
    h("button", { type: "submit", class: "primary", id: "tell-send" }, "Send tell"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = $("tell-from").value, t = $("tell-to").value, text = $("tell-text").value;
    if (!text.trim()) return;
    const v = await act("Send tell", "tell", { from: f, to: t, text, async: true });
    if (v) {
      $("tell-text").value = "";
      S.openNext = v.tell_id;
      location.hash = "#/pair/" + encodeURIComponent(f) + "/" + encodeURIComponent(t);
    }
  });
  return form;
}

async function overviewView() {
  const o = await api("overview");
  S.overview = o;
  const teams = o.teams.map((t) => t.name);
  const byPair = new Map(o.pairs.map((p) => [p.from_team + "\u0000" + p.to_team, p]));
  const matrix = h("table", { id: "matrix" },
    h("caption", { class: "sr-only", text: "Tells between teams: rows tell, columns answer" }),
    h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "from \\ to" }),
      teams.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, teams.map((f) => h("tr", {}, h("th", { scope: "row", text: f }),
      teams.map((t) => {
        if (f === t) return h("td", { class: "empty", text: "–" });
        const p = byPair.get(f + "\u0000" + t);
        const link = h("a", { href: "#/pair/" + encodeURIComponent(f) + "/" + encodeURIComponent(t),
          "aria-label": f + " to " + t },
          p ? fmtInt(p.counts.tells) + (p.counts.tells === 1 ? " tell" : " tells") : "open");
        return h("td", {}, link,
          p ? h("div", { class: "muted" }, fmtCost(p.counts.cost_usd),
            p.counts.open ? [" · ", h("span", { class: "state state-queued", text: p.counts.open + " open" })] : "",
            p.process_state && p.process_state !== "stopped" ? [" · ", stateBadge(p.process_state)] : "") : null);
      })))));
  const live = o.live_agents.length
    ? h("table", { id: "live-agents" },
      h("thead", {}, h("tr", {}, ["Team", "Pair", "PID", "State", "Uptime", "Memory", "Current tell", "Queue"]
        .map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, o.live_agents.map((a) => h("tr", {},
        h("td", { text: a.team }),
        h("td", {}, h("a", { href: "#/pair/" + a.pair.split(":").map(encodeURIComponent).join("/"), text: a.pair })),
        h("td", { text: a.pid ?? "–" }), h("td", {}, stateBadge(a.state)),
        h("td", { text: fmtMs(a.uptime_ms) }),
        h("td", { text: a.memory_kb ? (a.memory_kb / 1024).toFixed(1) + " MiB" : "–" }),
        h("td", { text: a.current_tell_id ? a.current_tell_id.slice(0, 8) : "–" }),
        h("td", { text: a.queue_length })))))
    : h("p", { class: "muted", id: "live-agents", text: "No agent is running." });
  const hl = o.health;
  return h("section", { "aria-labelledby": "ov-title" },
    h("h2", { id: "ov-title", text: "Overview" }),
    h("div", { class: "cards" },
      card("tells today", fmtInt(o.today.tells), "total-today"),
      card("answered today", fmtInt(o.today.answered)),
      card("failed today", fmtInt(o.today.failed)),
      card("tokens today", fmtInt(o.today.input_tokens + o.today.output_tokens)),
      card("cost today", fmtCost(o.today.cost_usd)),
      card("cost, all time", fmtCost(o.all_time.cost_usd)),
      h("a", { href: "#/approvals", class: "card", id: "pending-card" },
        h("div", { class: "v", text: o.pending_approvals }), h("div", { class: "k", text: "pending approvals" })),
      h("div", { class: "card", id: "health" }, h("div", { class: "v" }, stateBadge(hl.status)),
        h("div", { class: "k", text: "server pid " + hl.pid + (hl.error ? " – " + hl.error : "") }))),
    h("h2", { text: "Teams and pairs" }), h("div", { class: "scroll" }, matrix),
    h("h2", { text: "Live agents" }), h("div", { class: "scroll" }, live),
    h("h2", { text: "Send a tell" }), tellForm(o.teams, teams[0], teams[1] || teams[0]));
}

function pairActions(from, to) {
  const body = { from, to };
  const btn = (label, op, cls) => h("button", { type: "button", class: cls, "data-op": op,
    onclick: () => act(label, op, body) }, label);
  const del = h("button", { type: "button", class: "danger", id: "delete", "aria-describedby": "delete-help" }, "Delete…");
  const help = h("span", { id: "delete-help", class: "sr-only",
    text: "Deletes the session and its tells; asks for confirmation first" });
  del.addEventListener("click", () => {
    if (!del.classList.contains("confirm")) {
      del.classList.add("confirm");
      del.textContent = "Yes, delete " + from + " → " + to + " and its tells";
      del.focus();
      return;
    }
    act("Delete", "delete", { from, to, confirm: true }, () => { location.hash = "#/"; });
  });
  return h("div", { class: "actions", role: "group", "aria-label": "Actions on this pair" },
    btn("Cancel all", "cancel"), btn("Compact", "compact"), btn("Sleep", "sleep"),
    btn("Wake", "wake"), btn("Reboot", "reboot"), del, help);
}

async function pairView(from, to) {
  const p = await api("pair", { from, to });
  const o = S.overview || await api("overview");
  S.overview = o;
  const s = p.session;
  const dl = s ? h("dl", { class: "kv", id: "session" })
    : h("p", { class: "muted", text: "No session yet: the first tell makes one." });
  if (s) {
    const rows = [["session id", s.session_id], ["status", s.status],
      ["agent", s.process_state + (s.agent_pid ? " (pid " + s.agent_pid + ")" : "")],
      ["messages since compaction", s.message_count],
      ["compactions", s.compaction_count + (s.last_compacted_at ? ", last " + s.last_compacted_at + " (" +
        (s.last_pre_compact_tokens ?? "?") + " → " + (s.last_post_compact_tokens ?? "?") + " tokens)" : "")],
      ["tokens", fmtInt(s.input_tokens) + " in, " + fmtInt(s.output_tokens) + " out"], ["cost", fmtCost(s.cost_usd)],
      ["lease owner", s.owner_pid ? "pid " + s.owner_pid : "none"], ["last error", s.last_error || "none"]];
    for (const [k, v] of rows) dl.append(h("dt", { text: k }), h("dd", { text: v }));
  }
  const tells = h("div", { id: "tells" }, p.tells.length ? p.tells.slice().reverse().map(tellCard)
    : h("p", { class: "muted", text: "No tells yet." }));
  return h("section", { "aria-labelledby": "pair-title" },
    h("h2", { id: "pair-title", text: from + " → " + to }),
    dl, pairActions(from, to),
    h("h3", { text: "Send a tell" }), tellForm(o.teams, from, to),
    h("h3", { text: "Conversation (newest first)" }), tells);
}

function tellCard(v) {
  const open = v.state === "queued" || v.state === "delivered";
  const id = v.tell_id;
  const existing = S.open.get(id);
  const timeline = existing ? existing.list : h("ol", { class: "timeline", id: "timeline-" + id,
    "aria-live": "polite", "aria-label": "Activity of tell " + id.slice(0, 8) });
  const toggle = h("button", { type: "button", "aria-expanded": "false", "aria-controls": "timeline-" + id,
    class: "activity-toggle" }, "Activity");
  const show = () => { toggle.setAttribute("aria-expanded", "true"); follow(id, timeline); };
  toggle.addEventListener("click", () => {
    if (toggle.getAttribute("aria-expanded") === "true") {
      toggle.setAttribute("aria-expanded", "false");
      unfollow(id);
      timeline.replaceChildren();
    } else show();
  });
  const card = h("article", { class: "tell", id: "tell-" + id, "data-state": v.state },
    h("header", {}, h("span", { class: "who", text: v.kind === "compact" ? "compaction" : v.from_team + " → " + v.to_team }),
      stateBadge(v.state), h("span", { text: fmtTime(v.created_at) }),
      h("span", { class: "hide-narrow", text: "id " + id.slice(0, 8) }),
      h("span", { text: "wait " + fmtMs(v.queue_wait_ms) }), h("span", { text: "turn " + fmtMs(v.turn_ms) }),
      v.input_tokens !== null ? h("span", { text: fmtInt(v.input_tokens) + "/" + fmtInt(v.output_tokens) + " tokens" }) : null,
      v.cost_usd !== null ? h("span", { text: fmtCost(v.cost_usd) }) : null),
    h("div", { class: "msg", "aria-label": "message" }, markdown(v.text)),
    v.answer !== null ? h("div", { class: "answer", "aria-label": "answer" }, markdown(v.answer)) : null,
    v.error ? h("p", { class: "error", text: v.error }) : null,
    h("div", { class: "actions" }, toggle,
      open ? h("button", { type: "button", class: "danger cancel-tell", "data-tell": id,
        onclick: () => act("Cancel tell", "cancel_tell", { tell_id: id }) }, "Cancel tell") : null),
    timeline);
  if (existing) {
    toggle.setAttribute("aria-expanded", "true");
  } else if (S.openNext === id || v.state === "delivered") {
    if (S.openNext === id) S.openNext = null;
    show();
  }
  return card;
}

// A tell's timeline: its stored events, then live ones, from /events?tell=ID (gapless).
function follow(id, list) {
  const prev = S.open.get(id);
  if (prev && prev.es) prev.es.close();
  const entry = { es: null, list, seen: 0 };
  S.open.set(id, entry);
  const es = new EventSource("/events?tell=" + encodeURIComponent(id) + "&after=0", { withCredentials: true });
  entry.es = es;
  for (const t of TYPES) {
    es.addEventListener(t, (m) => {
      const ev = JSON.parse(m.data);
      if (ev.id && ev.id <= entry.seen) return;
      entry.seen = ev.id || entry.seen;
      list.append(timelineItem(ev));
    });
  }
}
function unfollow(id) {
  const e = S.open.get(id);
  if (e && e.es) e.es.close();
  S.open.delete(id);
}

function timelineItem(ev) {
  const t = new Date(ev.at).toLocaleTimeString();
  let what;
  switch (ev.type) {
    case "tool_use": what = [ev.tool, " ", h("code", { text: ev.input })]; break;
    case "tool_result": what = [(ev.ok ? "ok" : "error") + (ev.duration_ms != null ? " in " + fmtMs(ev.duration_ms) : "") + ": ", h("code", { text: ev.excerpt })]; break;
    case "text": what = ev.text; break;
    case "usage": what = fmtInt(ev.input_tokens) + " in, " + fmtInt(ev.output_tokens) + " out, " + fmtCost(ev.cost_usd); break;
    case "agent_status": what = ev.text; break;
    case "tell_failed": what = ev.state + ": " + ev.error; break;
    case "tell_cancelled": what = ev.reason; break;
    case "tell_answered": what = fmtMs(ev.duration_ms) + ", " + fmtCost(ev.cost_usd); break;
    case "approval_requested": what = ev.tool + " " + ev.input + " (decided by " + ev.decide_by + ")"; break;
    case "approval_decided": what = ev.tool + ": " + ev.decision + " by " + ev.by + (ev.reason ? " (" + ev.reason + ")" : ""); break;
    case "agent_stopped": what = ev.reason + (ev.detail ? ": " + ev.detail : ""); break;
    case "agent_spawning": what = ev.resume ? "resuming the session" : "new session"; break;
    case "agent_ready": what = "pid " + ev.pid; break;
    case "process_state": what = ev.state; break;
    case "tell_queued": what = ev.kind + ", " + fmtInt(ev.bytes) + " bytes"; break;
    case "compaction_end": what = (ev.pre_tokens ?? "?") + " → " + (ev.post_tokens ?? "?") + " tokens"; break;
    case "approval_expired": what = ev.reason; break;
    case "activity_truncated": what = fmtInt(ev.events) + " events, " + fmtInt(ev.bytes) + " bytes left out"; break;
    default: what = "";
  }
  return h("li", { "data-type": ev.type }, h("span", { class: "t", text: t }),
    h("span", { class: "ev", text: ev.type.replace(/_/g, " ") }), what);
}

// ---------- approvals ----------
async function approvalsList() {
  try {
    const v = await api("approvals", { all: true, limit: 200 });
    return Array.isArray(v) ? v : (v.approvals || []);
  } catch (e) {
    if (e.message === "not logged in") throw e;
    return null;
  }
}

async function updateApprovalsCount() {
  const n = S.overview ? S.overview.pending_approvals : 0;
  $("approvals-count").textContent = n ? String(n) : "";
}

function countdown(el, expires) {
  const tick = () => {
    const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    el.textContent = left > 0 ? "expires in " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") : "expired";
    if (left <= 0 || !el.isConnected) { clearInterval(timer); S.timers.delete(timer); }
  };
  const timer = setInterval(tick, 1000);
  S.timers.add(timer);
  tick();
  return el;
}

async function approvalsView() {
  const list = await approvalsList();
  if (list === null) {
    return h("section", {}, h("h2", { text: "Approvals" }),
      h("p", { class: "muted", text: "This server does not route approvals." }));
  }
  const pending = list.filter((a) => a.state === "pending");
  const decided = list.filter((a) => a.state !== "pending");
  if (S.overview) S.overview.pending_approvals = pending.length;
  const item = (a) => {
    const id = a.approval_id;
    const reason = h("input", { id: "reason-" + id, type: "text", placeholder: "why (told to the agent)" });
    const decide = (decision, always) => act(decision === "allow" ? "Allow" : "Deny", "approve",
      { id, decision, always: !!always, reason: decision === "deny" ? reason.value || null : null });
    const exp = a.expires_at;
    const created = a.created_at;
    return h("article", { class: "approval", id: "approval-" + id, "data-tool": a.tool },
      h("header", {}, h("strong", { text: a.tool }), " for ", h("span", { text: (a.from_team || "?") + " → " + (a.to_team || "?") }),
        " · ", h("span", { class: "muted", text: "asked " + fmtTime(created) }), " · ",
        exp ? countdown(h("span", { class: "countdown" }), exp) : null),
      h("pre", {}, h("code", { text: a.input || "" })),
      h("div", { class: "actions", role: "group", "aria-label": "Decide " + a.tool },
        h("button", { type: "button", class: "primary", onclick: () => decide("allow", false) }, "Allow"),
        h("button", { type: "button", onclick: () => decide("allow", true) }, "Allow always"),
        h("div", {}, h("label", { for: "reason-" + id, text: "Reason for denying" }), reason),
        h("button", { type: "button", class: "danger", onclick: () => decide("deny", false) }, "Deny")));
  };
  return h("section", { "aria-labelledby": "ap-title" },
    h("h2", { id: "ap-title", text: "Approvals waiting (" + pending.length + ")" }),
    pending.length ? pending.map(item) : h("p", { class: "muted", text: "Nothing is waiting for a decision." }),
    h("h2", { text: "Decided" }),
    decided.length ? h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Tool", "Pair", "Decision", "By", "Reason"].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, decided.slice(-50).reverse().map((a) => h("tr", {},
        h("td", { text: a.tool }), h("td", { text: (a.from_team || "?") + " → " + (a.to_team || "?") }),
        h("td", {}, stateBadge(a.state)), h("td", { text: a.decided_by || "–" }),
        h("td", { text: a.reason || "" }))))))
      : h("p", { class: "muted", text: "None yet." }));
}

// ---------- stats (inline SVG) ----------
function svg(tag, attrs, ...kids) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const k of kids.flat(Infinity)) if (k) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

function barChart(title, items, opts) {
  // items: [{label, values: [n, ...]}]; stacked bars.
  const W = 720, H = 220, L = 44, B = 28, T = 10;
  const top = Math.max(0, ...items.map((i) => i.values.reduce((a, b) => a + b, 0)));
  // Counts: a multiple of 4, so every grid line is a whole number.
  const max = opts.fmt ? (top || 1) : Math.max(4, Math.ceil(top / 4) * 4);
  const bw = (W - L - 10) / Math.max(1, items.length);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  g.append(svg("title", {}, title));
  for (let k = 0; k <= 4; k++) {
    const y = T + (H - T - B) * (1 - k / 4);
    g.append(svg("line", { x1: L, x2: W - 5, y1: y, y2: y, stroke: "#e3e6ea" }),
      svg("text", { x: L - 4, y: y + 3, "text-anchor": "end" }, opts.fmt ? opts.fmt(max * k / 4) : Math.round(max * k / 4)));
  }
  items.forEach((it, i) => {
    let y0 = H - B;
    it.values.forEach((v, j) => {
      const bh = (H - T - B) * v / max;
      if (bh > 0) {
        g.append(svg("rect", { class: j ? "bar2" : "bar", x: L + i * bw + 1, y: y0 - bh, width: Math.max(1, bw - 2), height: bh },
          svg("title", {}, it.label + ": " + (opts.series ? opts.series[j] + " " : "") + (opts.fmt ? opts.fmt(v) : v))));
        y0 -= bh;
      }
    });
    if (i % (opts.every || 1) === 0) {
      g.append(svg("text", { x: L + i * bw + bw / 2, y: H - B + 14, "text-anchor": "middle" }, it.label));
    }
  });
  const legend = opts.series ? h("p", { class: "legend" }, opts.series.map((s, j) =>
    [h("span", { class: "sw" + j }), s])) : null;
  return h("figure", { class: "chart" }, h("figcaption", { text: title }), g, legend);
}

async function statsView() {
  const s = await api("stats", { days: 7 });
  const hours = s.per_hour.map((x) => ({ label: new Date(x.hour).getHours() + "h", values: [x.answered, x.tells - x.answered] }));
  const L = s.latency;
  const lat = [["p50", L.p50_ms], ["p90", L.p90_ms], ["p99", L.p99_ms], ["max", L.max_ms]]
    .map(([k, v]) => ({ label: k, values: [v || 0] }));
  const teams = [...new Set(s.cost_per_team_day.map((c) => c.team))].sort();
  const days = [];
  for (let d = s.since; d <= Date.now(); d += 86400000) days.push(d);
  const costItems = [];
  for (const d of days) {
    for (const t of teams) {
      const c = s.cost_per_team_day.find((x) => x.team === t && x.day === d);
      costItems.push({ label: new Date(d).toISOString().slice(5, 10) + " " + t, values: [c ? c.cost_usd : 0] });
    }
  }
  const costTable = h("table", { id: "cost-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "day (UTC)" }), teams.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, days.map((d) => h("tr", {}, h("th", { scope: "row", text: new Date(d).toISOString().slice(0, 10) }),
      teams.map((t) => {
        const c = s.cost_per_team_day.find((x) => x.team === t && x.day === d);
        return h("td", { text: c ? fmtCost(c.cost_usd) : "–" });
      })))));
  return h("section", { "aria-labelledby": "st-title" },
    h("h2", { id: "st-title", text: "Stats" }),
    barChart("Tells per hour, last 24 hours", hours, { series: ["answered", "other"], every: 3 }),
    h("h3", { text: "Answer latency, last 7 days (" + L.count + " answered)" }),
    barChart("Latency percentiles (stored to answered)", lat, { fmt: (v) => fmtMs(Math.round(v)) }),
    h("h3", { text: "Cost per answering team per day" }),
    teams.length ? barChart("Cost per team per day", costItems, { fmt: (v) => "$" + v.toFixed(3), every: Math.max(1, teams.length) }) : null,
    h("div", { class: "scroll" }, costTable));
}

// ---------- start ----------
window.addEventListener("hashchange", () => {
  for (const id of [...S.open.keys()]) unfollow(id);
  render();
});
document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  await session();
  connect();
  render();
});
