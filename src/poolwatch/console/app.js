// poolwatch console: boot, routing between views, the poll loop, token and messages.
//
// Why a short poll of the JSON API rather than WebSockets or Server-Sent Events:
// - The API already returns complete snapshots (pools, one page of tasks), so each poll
//   is self-contained: no event stream to replay, no state to rebuild after a reconnect,
//   and a lost response costs one second of staleness, not a desynchronised view.
// - It needs nothing beyond the documented endpoints: the same URLs, auth header and
//   error bodies as every other client, and it passes through proxies, path prefixes and
//   load balancers that buffer or cut long-lived connections.
// - The server keeps no per-viewer state and runs no fan-out machinery; one console costs
//   two or three small GETs a second, which is noise next to the pools it watches.
// - Rates (throughput, failure rate) are derived here from counter deltas between polls,
//   exactly as Prometheus does, so an event stream would add nothing the counters lack.
// The loop never overlaps itself: the next poll is scheduled when the previous one ends.
// A tab in the background polls every five seconds, and catches up when it comes back.

import { ApiError, api, getToken, setToken } from "./api.js";
import { count, setHidden, setText } from "./format.js";
import { createPoolsView } from "./pools.js";
import { createTasksView } from "./tasks.js";

const POLL_INTERVAL_MS = 1000;
const LATENCY_INTERVAL_MS = 5000; // quantiles over minutes change slowly
const HIDDEN_POLL_INTERVAL_MS = 5000; // a tab in the background needs no second-by-second view
const byId = (id) => document.getElementById(id);

const state = {
  view: "pools",
  info: null, // from api/info; null until known (older servers may not have it)
  canMutate: true,
};

// ---- messages ---------------------------------------------------------------------

// The boxes are shown before their text changes, so screen readers announce the change.
function announce(text) {
  setHidden(byId("status-box"), false);
  setText(byId("status-text"), text);
}

/** The API's message as it was sent, then a hint of our own as a separate sentence. */
function withHint(message, hint) {
  const text = String(message).trim();
  return /[.!?]$/.test(text) ? `${text} ${hint}` : `${text}. ${hint}`;
}

/** A message for the user from any error, with what to do about it. */
function explain(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the console: ${err?.message ?? err}`;
  if (err.isAuth && !state.info?.read_only && err.code !== "read_only") {
    const hint = getToken()
      ? "The API token in the field at the top was not accepted: enter a valid token and save it."
      : "Enter a valid API token in the field at the top and save it.";
    return withHint(err.message, hint);
  }
  return err.message;
}

function fail(err) {
  setHidden(byId("error-box"), false);
  setText(byId("error-text"), explain(err));
}

for (const button of document.querySelectorAll("[data-close]")) {
  button.addEventListener("click", () => setHidden(byId(button.dataset.close), true));
}

const CONNECTION_NEWS = {
  live: "Connected: the console updates every second.",
  down: "Connection to the server lost; retrying.",
  auth: "The server asks for a valid API token.",
};

/**
 * Show the connection state. The visible line changes every second (it carries the
 * time of the last update), so screen readers hear only changes of state, from a
 * separate live region.
 */
function setConnection(kind, text) {
  const box = byId("connection");
  if (box.dataset.state !== kind) {
    box.dataset.state = kind;
    setText(byId("connection-live"), CONNECTION_NEWS[kind] ?? "");
  }
  setText(byId("connection-text"), text);
}

// ---- confirmation -------------------------------------------------------------------

function confirmShutdown(name, pool) {
  const dialog = byId("confirm-dialog");
  setText(byId("confirm-title"), `Shut down pool ${name}?`);
  const running = pool.active;
  const queued = pool.queued;
  setText(
    byId("confirm-body"),
    `The pool stops accepting tasks and is removed once its work is done. ` +
      `${running} running and ${queued} queued ${queued === 1 ? "task" : "tasks"} right now. ` +
      `Running tasks always finish; this cannot be undone from the console.`,
  );
  byId("confirm-cancel-pending").checked = false;
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () =>
        resolve({
          confirmed: dialog.returnValue === "confirm",
          cancelPending: byId("confirm-cancel-pending").checked,
        }),
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// ---- views --------------------------------------------------------------------------

const poolsView = createPoolsView({
  list: byId("pool-list"),
  template: byId("pool-card-template"),
  empty: byId("pools-empty"),
  summary: byId("pools-summary"),
  actions: {
    patch: (name, changes) => api.patchPool(name, changes),
    shutdown: (name, cancelPending) => api.deletePool(name, cancelPending),
    confirmShutdown,
    announce,
    explain,
  },
});

const tasksView = createTasksView({
  root: byId("view-tasks"),
  actions: {
    api,
    announce,
    fail,
    refresh: () => refresh({ forceTasks: true }),
    saveLocation,
  },
});

function showView(view) {
  state.view = view;
  setHidden(byId("view-pools"), view !== "pools");
  setHidden(byId("view-tasks"), view !== "tasks");
  for (const [id, name] of [["tab-pools", "pools"], ["tab-tasks", "tasks"]]) {
    const tab = byId(id);
    if (name === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.title = `${view === "pools" ? "Pools" : "Tasks"} · poolwatch`;
}

/** Read "#tasks?pool=..&page=2&task=ID" or "#pools" and show it. */
function route() {
  const hash = location.hash.replace(/^#/, "");
  const [view, query = ""] = hash.split("?");
  if (view === "tasks") {
    showView("tasks");
    tasksView.fromParams(new URLSearchParams(query));
  } else {
    showView("pools");
  }
  refresh({ forceTasks: true });
}

/** Mirror the tasks view's filters in the address without adding history entries. */
function saveLocation() {
  if (state.view !== "tasks") return;
  const query = tasksView.toParams().toString();
  const hash = `#tasks${query ? `?${query}` : ""}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

window.addEventListener("hashchange", route);

// ---- server info, mode and token ------------------------------------------------------

let infoLoaded = false;

/** Learn the server's version and mode; retried by the poll loop until it succeeds. */
async function loadInfo() {
  try {
    state.info = await api.info();
  } catch (err) {
    // Without api/info the console still watches; controls stay on and the server decides.
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    state.info = null;
  }
  infoLoaded = true;
  applyMode();
}

function applyMode() {
  const info = state.info;
  const badge = byId("mode-badge");
  const note = byId("mode-note");
  setText(byId("version"), info?.version ? `v${info.version}` : "");
  let canMutate = true;
  let badgeText = "";
  let noteText = "";
  if (info?.read_only) {
    canMutate = false;
    badgeText = "Read-only";
    noteText = "This server runs read-only: pools and tasks can be watched here but not changed.";
  } else if (info && info.mutations_allowed === false) {
    canMutate = false;
    badgeText = "View only";
    noteText = "This server does not accept changes; start it with an API token to manage pools from here.";
  } else if (info?.auth_required && !getToken()) {
    noteText = "Changes need the API token: enter it at the top of the page.";
  }
  setText(badge, badgeText);
  setHidden(badge, !badgeText);
  setText(note, noteText);
  setHidden(note, !noteText);
  document.body.classList.toggle("read-only", !canMutate);
  byId("token-form").dataset.required = info?.auth_required && !getToken() ? "true" : "false";
  state.canMutate = canMutate;
  poolsView.setCanMutate(canMutate);
  tasksView.setCanMutate(canMutate);
}

function showTokenState() {
  setText(byId("token-state"), getToken() ? "Token set for this tab" : "No token");
}

byId("token-input").value = getToken();
showTokenState();
byId("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = byId("token-input").value.trim();
  setToken(token);
  showTokenState();
  setHidden(byId("error-box"), true);
  announce(token ? "Token saved for this browser tab; it is sent with every request." : "Token cleared.");
  applyMode();
  refresh({ forceTasks: true });
});
byId("token-clear").addEventListener("click", () => {
  setToken("");
  byId("token-input").value = "";
  showTokenState();
  announce("Token cleared.");
  applyMode();
});

async function loadTaskTypes() {
  try {
    const body = await api.taskTypes();
    const items = Array.isArray(body?.data) ? body.data : Array.isArray(body) ? body : [];
    tasksView.setTaskNames(items.map((t) => (typeof t === "string" ? t : t?.name)).filter(Boolean));
    tasksView.setTaskTypes(items.filter((t) => t && typeof t === "object"));
  } catch {
    // Only a convenience for the name filter; typing a name works without it.
  }
}

// ---- what older servers may lack: links, the server's samples, latency ---------------

let settingsLoaded = false;
let samplesLoaded = false;
let latencyAt = 0;

/** Tolerate a server without the endpoint (404): the console works without it. */
async function optional(load) {
  try {
    return await load();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

async function loadSettings() {
  const settings = await optional(() => api.consoleSettings());
  settingsLoaded = true;
  poolsView.setSettings(settings);
  tasksView.setSettings(settings);
}

async function loadSamples() {
  const body = await optional(() => api.samples());
  samplesLoaded = true;
  if (body) poolsView.seed(body);
}

async function loadLatency() {
  latencyAt = performance.now();
  const body = await optional(() => api.latency(byId("latency-window").value));
  if (body) poolsView.setLatency(body);
}

/**
 * In a multi-process server (gunicorn, uvicorn --workers) each request may reach another
 * worker process: say what the whole server did, and which process the cards show.
 */
function showServer(body) {
  const info = body?.server;
  const box = byId("server-summary");
  if (!info?.multiprocess) {
    setHidden(box, true);
    return;
  }
  const processes = `${count(info.processes)} ${info.processes === 1 ? "process" : "processes"}`;
  const live = info.live_processes === info.processes ? "" : ` (${count(info.live_processes)} running)`;
  setText(
    box,
    `Whole server, ${processes}${live}: ${count(body.submitted)} submitted · ` +
      `${count(body.succeeded)} succeeded · ${count(body.failed)} failed · ` +
      `${count(body.active)} busy workers · ${count(body.queued)} queued. ` +
      `Answered by process ${info.pid}; the pool cards show that process only.`,
  );
  setHidden(box, false);
}

byId("latency-window").addEventListener("change", () => {
  loadLatency().catch(fail);
});

// ---- the poll loop --------------------------------------------------------------------

let timer = null;
let inFlight = false;
let pending = false;
let forceTasks = false;
let failures = 0;

function refresh({ forceTasks: force = false } = {}) {
  if (force) forceTasks = true;
  if (inFlight) {
    pending = true;
    return;
  }
  clearTimeout(timer);
  poll();
}

async function poll() {
  inFlight = true;
  const started = performance.now();
  const force = forceTasks;
  forceTasks = false;
  try {
    const jobs = [
      api.pools().then((body) => {
        const pools = Array.isArray(body?.data) ? body.data : [];
        poolsView.update(pools);
        tasksView.setPools(pools.map((p) => p.name), pools);
      }),
    ];
    if (state.view === "pools") jobs.push(optional(() => api.stats()).then(showServer));
    if (!infoLoaded) jobs.push(loadInfo());
    if (!settingsLoaded) jobs.push(loadSettings());
    if (!samplesLoaded) jobs.push(loadSamples());
    if (state.view === "pools" && performance.now() - latencyAt >= LATENCY_INTERVAL_MS) {
      jobs.push(loadLatency());
    }
    if (state.view === "tasks") {
      jobs.push(
        tasksView.load(undefined, { force }),
        tasksView.loadDetail(undefined),
        tasksView.loadStack(undefined),
      );
    }
    await Promise.all(jobs);
    failures = 0;
    const time = new Date().toLocaleTimeString([], { hour12: false });
    setConnection("live", `Live · updated ${time}`);
  } catch (err) {
    failures += 1;
    if (err instanceof ApiError && err.isAuth) {
      setConnection("auth", "Token needed: enter a valid API token");
    } else {
      setConnection("down", withHint(err instanceof ApiError ? err.message : String(err), "Retrying…"));
    }
  } finally {
    inFlight = false;
    if (pending) {
      pending = false;
      poll();
    } else {
      // Back off gently while the server is unreachable, up to five seconds.
      const base = document.hidden ? HIDDEN_POLL_INTERVAL_MS : POLL_INTERVAL_MS;
      const backoff = POLL_INTERVAL_MS * 2 ** Math.min(failures - 1, 3);
      const interval = failures ? Math.max(base, Math.min(5000, backoff)) : base;
      timer = setTimeout(poll, Math.max(50, interval - (performance.now() - started)));
    }
  }
}

// Back in front: catch up at once instead of waiting for the slow background poll.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh({ forceTasks: true });
});

// ---- boot -------------------------------------------------------------------------------

loadTaskTypes();
route();
