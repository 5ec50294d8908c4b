// Formatting and small DOM helpers shared by the views. Every value reaches the page
// through textContent or an attribute, never through innerHTML.

const STATE_LABELS = {
  queued: "Queued",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
  paused: "Paused",
  shutting_down: "Shutting down",
  terminated: "Terminated",
};

export function stateLabel(state) {
  return STATE_LABELS[state] ?? String(state ?? "unknown");
}

/** Seconds as a short human duration: "—", "<1 ms", "340 ms", "2.41 s", "3 m 05 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 0.001) return "<1 ms";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.floor(seconds % 60);
  if (minutes < 60) return `${minutes} m ${String(rest).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} m`;
}

/** A rate per second with sensible precision. */
export function rate(perSecond) {
  if (perSecond === null || perSecond === undefined) return "—";
  if (perSecond === 0) return "0/s";
  if (perSecond < 10) return `${perSecond.toFixed(1)}/s`;
  return `${Math.round(perSecond).toLocaleString()}/s`;
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "—";
  const value = fraction * 100;
  if (value === 0) return "0%";
  if (value < 1) return "<1%";
  return `${value.toFixed(value < 10 ? 1 : 0)}%`;
}

export function count(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

/** Parse an ISO 8601 string (or epoch seconds) into epoch milliseconds, or null. */
export function toMillis(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value * 1000;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** Local clock time for a table cell; the date is added when it is not today. */
export function clockTime(value) {
  const ms = toMillis(value);
  if (ms === null) return "—";
  const date = new Date(ms);
  const time = date.toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

/** Full local timestamp with milliseconds, for the detail panel. */
export function fullTime(value) {
  const ms = toMillis(value);
  if (ms === null) return "—";
  const date = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `.${pad(date.getMilliseconds(), 3)}`
  );
}

/** Set textContent only when it changed, so unchanged nodes are left alone. */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) {
    el.setAttribute(name, String(value));
  }
}

export function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

/** Create an element with attributes and text in one call. */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A short prefix of an opaque id, enough to tell tasks apart on screen. */
export function shortId(id) {
  const s = String(id);
  return s.length > 10 ? `${s.slice(0, 8)}…` : s;
}
