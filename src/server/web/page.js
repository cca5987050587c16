// The instructor's page: renders the server's state, then follows its
// events. Everything shown comes from the server as data and is set as
// text, never as HTML: a name is whatever a student typed.
"use strict";

const MAX_MESSAGES = 50;
const MAX_EVENTS = 50;
// Cells of a stream's strip kept (as on the server).
const STRIP_CELLS = 120;
// Lines of the recent events shown: what fits the projector.
const SHOWN_EVENTS = 8;
const state = { roster: new Map(), streams: new Map(), messages: [], events: [], counters: null, skipped: 0 };

// One line of the recent events for `event`, or null if it is not one to list.
function describe(event) {
  switch (event.type) {
    case "joined": return `${event.name} joined`;
    case "left": return `${event.name} left (${event.reason})`;
    case "stream":
      if (event.change === "start") return `${event.viewer} plays ${event.video} (${event.plan}), from ${event.resolution}`;
      if (event.change === "switch") return `${event.viewer}'s stream switched to ${event.resolution}`;
      if (event.change === "end") return `${event.viewer}'s stream of ${event.video} ${event.state}`;
      return null;
    default: return null;
  }
}

function remember(event) {
  const text = describe(event);
  if (text === null) return;
  state.events.unshift({ text, at: event.at || Date.now() });
  state.events.length = Math.min(state.events.length, MAX_EVENTS);
}

function renderEvents() {
  const list = document.getElementById("events");
  list.replaceChildren();
  for (const e of state.events.slice(0, SHOWN_EVENTS)) {
    const item = element("li");
    item.append(element("time", clock(e.at)), element("span", e.text));
    list.append(item);
  }
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function bytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " kB";
  return n + " B";
}

// Each stream's resolutions, lowest first, as they appear: the strip's shades.
function shade(resolution) {
  const height = parseInt(resolution, 10) || 0;
  return height >= 1440 ? "r3" : height >= 720 ? "r2" : height >= 360 ? "r1" : "r0";
}

function renderRoster() {
  const body = document.querySelector("#roster tbody");
  body.replaceChildren();
  let addresses = false;
  for (const [name, member] of [...state.roster].sort((a, b) => a[0].localeCompare(b[0]))) {
    const row = element("tr");
    row.dataset.name = name;
    row.append(element("td", name, "name"), element("td", member.fingerprint, "fingerprint"),
      element("td", clock(member.joined_at)), element("td", member.threads), element("td", member.address, "address"));
    addresses ||= Boolean(member.address);
    body.append(row);
  }
  document.body.classList.toggle("addresses", addresses);
  document.getElementById("nobody").hidden = state.roster.size > 0;
}

function renderMessages() {
  const list = document.getElementById("messages");
  list.replaceChildren();
  for (const m of state.messages) {
    const item = element("li");
    item.className = "message";
    const flow = element("div", null, "flow");
    const others = m.mode === "broadcast" ? Math.max(m.recipients - 1, 0) : 0;
    flow.append(element("span", m.from, "from"), element("span", " → ", "arrow"), element("span", "server", "server"),
      element("span", " → ", "arrow"), element("mark", m.to, "to"));
    // In broadcast mode everyone else receives it too, unable to open it.
    const named = (m.bystanders || []).slice(0, others);
    for (const name of named) flow.append(element("span", ", "), element("span", name, "bystander"));
    if (others > named.length) flow.append(element("span", ` and ${others - named.length} more`));
    if (others > 0) flow.append(element("span", ` (fan-out ${m.recipients})`, "fanout"));
    const detail = element("div", null, "detail");
    detail.append(element("span", `${clock(m.at)} · ${bytes(m.bytes)} sealed · `),
      element("span", m.head + "…", "hex"));
    item.append(flow, detail);
    list.append(item);
  }
  document.getElementById("quiet").hidden = state.messages.length > 0;
}

function renderStreams() {
  const body = document.querySelector("#streams tbody");
  body.replaceChildren();
  for (const s of state.streams.values()) {
    const row = element("tr");
    row.className = "stream";
    const strip = element("div", null, "strip");
    for (const resolution of s.strip.slice(-64)) {
      const cell = element("i", null, shade(resolution));
      cell.title = resolution;
      strip.append(cell);
    }
    const cell = element("td");
    cell.append(strip);
    row.append(element("td", s.viewer), element("td", s.plan === "adaptive" ? `${s.video} (adaptive)` : s.video),
      element("td", s.resolution, "resolution"), element("td", s.frame), element("td", s.fps),
      element("td", s.late), element("td", bytes(s.bytes)), cell);
    body.append(row);
  }
  document.getElementById("still").hidden = state.streams.size > 0;
}

function renderCounters() {
  const list = document.getElementById("counters");
  list.replaceChildren();
  const c = state.counters;
  if (!c) return;
  const rows = [["clients", c.clients], ["threads", c.threads], ["queued in outboxes", c.outbox],
    ["in", bytes(c.bytes_in_per_s) + "/s"], ["out", bytes(c.bytes_out_per_s) + "/s"], ["frames", c.frames_per_s + "/s"],
    ["pictures from the store", c.store_percent + " %"], ["from the frame cache", c.cache_percent + " %"],
    ["messages relayed", c.relayed]];
  for (const [name, value] of rows) {
    const pair = element("div");
    pair.append(element("dt", name), element("dd", value));
    list.append(pair);
  }
}

function stream(event) {
  const key = `${event.viewer}/${event.stream}`;
  if (event.state !== "playing") {
    state.streams.delete(key);
    return;
  }
  // One cell per progress event: about one a second.
  const known = state.streams.get(key);
  const strip = known ? known.strip : [];
  strip.push(event.resolution);
  if (strip.length > STRIP_CELLS) strip.splice(0, strip.length - STRIP_CELLS);
  state.streams.set(key, { ...event, strip });
  const member = state.roster.get(event.viewer);
  if (member) member.threads = 3;
}

function apply(event, live) {
  switch (event.type) {
    case "snapshot":
      state.roster = new Map(event.roster.map((m) => [m.name, m]));
      state.streams = new Map(event.streams.map((s) => [`${s.viewer}/${s.stream}`, s]));
      state.messages = event.recent.filter((e) => e.type === "relayed").reverse();
      state.events = [];
      for (const e of event.recent) remember(e);
      state.counters = event.counters;
      // A new event stream counts its skipped events from zero.
      state.skipped = 0;
      break;
    case "joined":
      state.roster.set(event.name, { name: event.name, fingerprint: event.fingerprint, joined_at: event.at, address: event.address, threads: 2 });
      break;
    case "left":
      state.roster.delete(event.name);
      for (const [key, s] of [...state.streams]) if (s.viewer === event.name) state.streams.delete(key);
      break;
    case "relayed":
      state.messages.unshift(event);
      state.messages.length = Math.min(state.messages.length, MAX_MESSAGES);
      break;
    case "stream":
      stream(event);
      if (event.state !== "playing") {
        const member = state.roster.get(event.viewer);
        if (member) member.threads = 2;
      }
      break;
    case "counters":
      state.counters = event.counters;
      break;
    case "skipped":
      state.skipped = event.count;
      break;
  }
  if (event.type !== "snapshot") remember(event);
  if (live || event.type === "snapshot") render();
}

function render() {
  renderRoster();
  renderMessages();
  renderStreams();
  renderCounters();
  renderEvents();
  const skipped = document.getElementById("skipped");
  skipped.hidden = state.skipped === 0;
  skipped.textContent = `${state.skipped} events skipped (this browser fell behind)`;
}

// The present, as the server served it with the page: shown at once.
apply(JSON.parse(document.getElementById("snapshot").textContent), false);

const status = document.getElementById("status");
if (window.EventSource) {
  const events = new EventSource("/events" + location.search);
  events.onopen = () => { status.textContent = "live"; };
  events.onerror = () => { status.textContent = "reconnecting…"; };
  events.onmessage = (message) => apply(JSON.parse(message.data), true);
} else {
  status.textContent = "this browser cannot follow live events: reload to update";
}
