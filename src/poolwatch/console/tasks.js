// The tasks view: filters, a paginated table keyed by task id, and a detail panel.

import {
  clockTime,
  count,
  duration,
  el,
  fullTime,
  setAttr,
  setHidden,
  setText,
  shortId,
  stateLabel,
  toMillis,
} from "./format.js";
import { renderStack } from "./stack.js";
import { SORT_KEYS, isOverdue, parseSort, scanTasks } from "./taskquery.js";

const CANCELLABLE = new Set(["queued", "running"]);
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const COLUMNS = ["Task", "Name", "Pool", "State", "Submitted", "Wait", "Run", "Actions"];

const CANCEL_RESULTS = {
  cancelled: "cancelled before it started",
  requested: "cancel requested; the running task stops at its next cancellation check",
  finished: "already finished, nothing to cancel",
};

/** Page buttons to show: first, last, and a window around the current page, with gaps. */
export function pageItems(page, totalPages, around = 1) {
  const pages = new Set([1, totalPages]);
  for (let p = page - around; p <= page + around; p += 1) if (p >= 1 && p <= totalPages) pages.add(p);
  const sorted = [...pages].filter((p) => p >= 1).sort((a, b) => a - b);
  const out = [];
  sorted.forEach((p, i) => {
    if (i > 0 && p - sorted[i - 1] === 2) out.push(p - 1);
    else if (i > 0 && p - sorted[i - 1] > 2) out.push("gap");
    out.push(p);
  });
  return out;
}

export function createTasksView({ root, actions }) {
  const $ = (id) => root.querySelector(`#${id}`);
  const form = $("task-filters");
  const poolSelect = $("filter-pool");
  const stateSelect = $("filter-state");
  const nameInput = $("filter-name");
  const perPageSelect = $("filter-per-page");
  const liveToggle = $("live-toggle");
  const names = $("task-names");
  const tbody = $("task-rows");
  const emptyNote = $("tasks-empty");
  const summary = $("tasks-summary");
  const pager = $("pager");
  const pageList = $("page-list");
  const prev = $("page-prev");
  const next = $("page-next");
  const detail = $("task-detail");
  const detailTitle = $("detail-title");
  const detailMissing = $("detail-missing");
  const detailFields = $("detail-fields");
  const detailError = $("detail-error");
  const detailCancel = $("detail-cancel");
  const searchInput = $("filter-search");
  const sinceSelect = $("filter-since");
  const sortSelect = $("filter-sort");
  const searchScope = root.querySelector("#search-scope");
  const sortButtons = [...root.querySelectorAll("button.sort")];
  const stackBox = $("detail-stack");
  const stackList = $("stack-frames");
  const stackTime = $("stack-time");
  const stackNote = $("stack-note");
  const overdueBox = $("detail-overdue-stack");
  const overdueList = $("overdue-stack-frames");
  const overdueTime = $("overdue-stack-time");
  const traceText = detail.querySelector('[data-field="trace_id"] span');
  const traceLink = detail.querySelector('[data-field="trace_id"] a');

  for (const [key, [label]] of Object.entries(SORT_KEYS)) {
    const up = key === "submitted" ? "oldest first" : key === "wait" || key === "run" ? "shortest first" : "A to Z";
    const down = key === "submitted" ? "newest first" : key === "wait" || key === "run" ? "longest first" : "Z to A";
    sortSelect.append(el("option", { value: `${key}:asc` }, `${label}, ${up}`));
    sortSelect.append(el("option", { value: `${key}:desc` }, `${label}, ${down}`));
  }

  const filters = { pool: "", state: "", name: "", q: "", since: "", sort: "", page: 1, per_page: 20 };
  const limits = { taskTimeouts: new Map(), poolTimeouts: new Map() };
  let settings = null; // api/console: the trace URL template
  const rows = new Map(); // task id -> { tr, cells, task }
  let selected = null; // task id shown in the detail panel
  let selectedTask = null;
  let detailSettled = false; // the open task is finished (or gone) and fully loaded
  let generation = 0; // bumps on every filter change; stale answers are dropped
  let pagerKey = "";
  let canMutate = true;
  let nameTimer = null;
  let searchTimer = null;

  // ---- filters -------------------------------------------------------------------

  function filtersChanged({ resetPage = true } = {}) {
    if (resetPage) filters.page = 1;
    generation += 1;
    actions.saveLocation();
    actions.refresh();
  }

  poolSelect.addEventListener("change", () => {
    filters.pool = poolSelect.value;
    filtersChanged();
  });
  stateSelect.addEventListener("change", () => {
    filters.state = stateSelect.value;
    filtersChanged();
  });
  perPageSelect.addEventListener("change", () => {
    filters.per_page = Number(perPageSelect.value) || 20;
    filtersChanged();
  });
  nameInput.addEventListener("input", () => {
    clearTimeout(nameTimer);
    nameTimer = setTimeout(() => {
      const value = nameInput.value.trim();
      if (value === filters.name) return;
      filters.name = value;
      filtersChanged();
    }, 300);
  });
  searchInput.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const value = searchInput.value.trim();
      if (value === filters.q) return;
      filters.q = value;
      filtersChanged();
    }, 300);
  });
  sinceSelect.addEventListener("change", () => {
    filters.since = sinceSelect.value;
    filtersChanged();
  });
  sortSelect.addEventListener("change", () => {
    filters.sort = sortSelect.value;
    showSort();
    filtersChanged();
  });
  for (const button of sortButtons) {
    button.addEventListener("click", () => {
      const current = parseSort(filters.sort);
      const key = button.dataset.sort;
      // Times start longest/newest first, the rest A to Z; a second click reverses.
      const first = ["submitted", "wait", "run"].includes(key) ? "desc" : "asc";
      const dir = current?.key === key ? (current.dir === "asc" ? "desc" : "asc") : first;
      filters.sort = `${key}:${dir}`;
      showSort();
      filtersChanged();
    });
  }

  function showSort() {
    const sort = parseSort(filters.sort);
    if (sortSelect.value !== (sort ? filters.sort : "")) sortSelect.value = sort ? filters.sort : "";
    for (const button of sortButtons) {
      const th = button.closest("th");
      const on = sort?.key === button.dataset.sort;
      setAttr(th, "aria-sort", on ? (sort.dir === "asc" ? "ascending" : "descending") : null);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(nameTimer);
    clearTimeout(searchTimer);
    filters.name = nameInput.value.trim();
    filters.q = searchInput.value.trim();
    filtersChanged();
  });
  form.addEventListener("reset", (event) => {
    // Clear the filters by hand: the form's own reset would also undo "per page" and "live".
    event.preventDefault();
    clearTimeout(nameTimer);
    clearTimeout(searchTimer);
    Object.assign(filters, { pool: "", state: "", name: "", q: "", since: "", sort: "" });
    poolSelect.value = "";
    stateSelect.value = "";
    nameInput.value = "";
    searchInput.value = "";
    sinceSelect.value = "";
    showSort();
    filtersChanged();
  });
  liveToggle.addEventListener("change", () => {
    if (liveToggle.checked) actions.refresh();
  });

  function goToPage(page) {
    if (page === filters.page || page < 1) return;
    filters.page = page;
    filtersChanged({ resetPage: false });
  }
  prev.addEventListener("click", () => goToPage(filters.page - 1));
  next.addEventListener("click", () => goToPage(filters.page + 1));
  pageList.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-page]");
    if (button) goToPage(Number(button.dataset.page));
  });

  // ---- table ---------------------------------------------------------------------

  function buildRow(id) {
    const tr = el("tr");
    tr.dataset.taskId = id;
    const cells = {};
    for (const label of COLUMNS) {
      const td = el("td", { "data-label": label });
      tr.append(td);
      cells[label] = td;
    }
    cells.Wait.className = "num";
    cells.Run.className = "num";
    cells.Name.classList.add("mono");
    const open = el(
      "button",
      { type: "button", className: "link mono", title: id, "aria-label": `Task ${id}` },
      shortId(id),
    );
    open.addEventListener("click", () => select(id, { focus: true }));
    cells.Task.append(open);
    const badge = el("span", { className: "badge" });
    const overdue = el("span", { className: "flag-overdue", hidden: "" }, "Overdue");
    cells.State.append(badge, " ", overdue);
    const time = el("time");
    cells.Submitted.append(time);
    const cancel = el(
      "button",
      { type: "button", className: "btn btn-small btn-danger-quiet", "aria-label": `Cancel task ${id}` },
      "Cancel",
    );
    cancel.addEventListener("click", () => cancelTask(id));
    cells.Actions.append(cancel);
    // A click anywhere on the row opens it too (the id button stays the keyboard path).
    tr.addEventListener("click", (event) => {
      if (!event.target.closest("button, a, input, select")) select(id, { focus: true });
    });
    return { tr, cells, open, badge, overdue, time, cancel, task: null };
  }

  function updateRow(row, task, now) {
    row.task = task;
    setText(row.cells.Name, task.name);
    setText(row.cells.Pool, task.pool);
    setText(row.badge, stateLabel(task.state));
    row.badge.dataset.state = task.state;
    setAttr(row.time, "datetime", task.submitted_at);
    setAttr(row.time, "title", fullTime(task.submitted_at));
    setText(row.time, clockTime(task.submitted_at));
    setText(row.cells.Wait, waitText(task, now));
    setText(row.cells.Run, runText(task, now));
    const late = isOverdue(task, limits, now);
    row.tr.classList.toggle("overdue", late);
    setHidden(row.overdue, !late);
    setHidden(row.cancel, !(canMutate && CANCELLABLE.has(task.state)));
    const isSelected = task.id === selected;
    row.tr.classList.toggle("selected", isSelected);
    setAttr(row.open, "aria-current", isSelected ? "true" : null);
  }

  function waitText(task, now) {
    if (task.queue_wait !== null && task.queue_wait !== undefined) return duration(task.queue_wait);
    if (task.state === "queued") {
      const since = toMillis(task.submitted_at);
      return since === null ? "—" : `${duration(Math.max(0, (now - since) / 1000))}…`;
    }
    return "—";
  }

  function runText(task, now) {
    if (task.run_time !== null && task.run_time !== undefined) return duration(task.run_time);
    if (task.state === "running") {
      const since = toMillis(task.started_at);
      return since === null ? "…" : `${duration(Math.max(0, (now - since) / 1000))}…`;
    }
    return "—";
  }

  function renderRows(items, now) {
    const seen = new Set();
    items.forEach((task, index) => {
      seen.add(task.id);
      let row = rows.get(task.id);
      if (!row) {
        row = buildRow(task.id);
        rows.set(task.id, row);
      }
      updateRow(row, task, now);
      // New tasks are inserted above the existing rows, which are never moved when
      // the order is unchanged, so focus and scroll position survive updates.
      const at = tbody.children[index];
      if (at !== row.tr) tbody.insertBefore(row.tr, at ?? null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
  }

  function renderPager(p) {
    const totalPages = Math.max(1, p.total_pages || 1);
    setHidden(pager, p.total <= filters.per_page && filters.page === 1);
    prev.disabled = !p.has_prev;
    next.disabled = !p.has_next;
    const key = `${p.page}/${totalPages}`;
    if (key === pagerKey) return;
    pagerKey = key;
    const focusedPage = document.activeElement?.closest?.("#page-list button")?.dataset.page;
    pageList.replaceChildren(
      ...pageItems(p.page, totalPages).map((item) => {
        const li = el("li");
        if (item === "gap") {
          li.append(el("span", { className: "gap", "aria-hidden": "true" }, "…"));
        } else {
          const attrs = {
            type: "button",
            className: "btn page",
            "data-page": String(item),
            "aria-label": `Page ${item}`,
          };
          if (item === p.page) attrs["aria-current"] = "page";
          li.append(el("button", attrs, String(item)));
        }
        return li;
      }),
    );
    if (focusedPage) pageList.querySelector(`button[data-page="${focusedPage}"]`)?.focus();
  }

  /** Fetch and show the current page; called by the poll loop and after any change. */
  async function load(signal, { force = false } = {}) {
    if (!force && !liveToggle.checked) return;
    const mine = generation;
    const body = scanning() ? await scan(signal) : await actions.api.tasks(serverQuery(), signal);
    if (mine !== generation) return; // the filters changed while this was in flight
    const items = Array.isArray(body?.data) ? body.data : [];
    const p = body?.pagination ?? { total: items.length, total_pages: 1, has_prev: false, has_next: false };
    setHidden(searchScope, !body?.scope);
    setText(searchScope, body?.scope ?? "");
    if (p.total_pages > 0 && filters.page > p.total_pages) {
      // The list shrank under us (history eviction, a filter): show the last page instead.
      filters.page = p.total_pages;
      filtersChanged({ resetPage: false });
      return;
    }
    const now = Date.now();
    renderRows(items, now);
    renderPager({ ...p, page: filters.page });
    setHidden(emptyNote, items.length > 0);
    const totalPages = Math.max(1, p.total_pages || 1);
    const noun = p.total === 1 ? "task" : "tasks";
    setText(summary, `${count(p.total)} ${noun} · page ${filters.page} of ${totalPages}`);
    if (selected && rows.has(selected) && !detail.hidden) {
      const row = rows.get(selected);
      // The list copy may leave out the traceback; keep the richer detail copy.
      if (selectedTask === null || selectedTask.state !== row.task.state) {
        renderDetail({ ...selectedTask, ...row.task });
        detailSettled = false;
      }
    }
  }

  function serverQuery(page = filters.page, perPage = filters.per_page) {
    return { pool: filters.pool, state: filters.state, name: filters.name, page, per_page: perPage };
  }

  function scanning() {
    return Boolean(filters.q || filters.since || parseSort(filters.sort));
  }

  function scan(signal) {
    return scanTasks((page, perPage) => actions.api.tasks(serverQuery(page, perPage), signal), filters);
  }

  // ---- detail ----------------------------------------------------------------------

  function select(id, { focus }) {
    selected = id;
    detailSettled = false;
    selectedTask = rows.get(id)?.task ?? null;
    for (const row of rows.values()) updateRow(row, row.task, Date.now());
    setHidden(detail, false);
    setText(detailTitle, `Task ${shortId(id)}`);
    setHidden(detailMissing, true);
    setHidden(detailFields, false);
    if (selectedTask) renderDetail(selectedTask);
    actions.saveLocation();
    if (focus) detailTitle.focus();
    actions.refresh();
  }

  function closeDetail() {
    const id = selected;
    selected = null;
    selectedTask = null;
    setHidden(detail, true);
    for (const row of rows.values()) updateRow(row, row.task, Date.now());
    actions.saveLocation();
    rows.get(id)?.open.focus();
  }
  $("detail-close").addEventListener("click", closeDetail);
  detail.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDetail();
  });
  detailCancel.addEventListener("click", () => {
    if (selected) cancelTask(selected);
  });

  function renderDetail(task) {
    selectedTask = task;
    const now = Date.now();
    const f = (name) => detail.querySelector(`[data-field="${name}"]`);
    const badge = f("state").firstElementChild;
    setText(badge, stateLabel(task.state));
    setAttr(badge, "data-state", task.state);
    setText(f("id"), task.id);
    setText(f("name"), task.name);
    setText(f("pool"), task.pool);
    setText(f("submitted_at"), fullTime(task.submitted_at));
    setText(f("started_at"), fullTime(task.started_at));
    setText(f("finished_at"), fullTime(task.finished_at));
    setText(f("queue_wait"), waitText(task, now));
    setText(f("run_time"), runText(task, now));
    setText(f("worker"), task.worker ?? "—");
    const trace = traceUrl(task.trace_id);
    setText(traceText, trace ? "" : task.trace_id ?? "—");
    setHidden(traceLink, !trace);
    if (trace) {
      setAttr(traceLink, "href", trace);
      setText(traceLink, task.trace_id);
      setAttr(traceLink, "aria-label", `Trace ${task.trace_id} (opens in a new tab)`);
    }
    const overdueStack = task.overdue_stack;
    setHidden(overdueBox, !overdueStack);
    if (overdueStack) {
      renderStack(overdueList, overdueStack);
      setText(overdueTime, `taken ${fullTime(overdueStack.taken_at)}`);
    }
    if (task.state !== "running") {
      setHidden(stackBox, true);
      stackList.dataset.key = "";
    }
    setText(f("cancel_requested"), task.cancel_requested ? "Yes" : "No");
    const hasError = Boolean(task.error_type || task.error_message || task.traceback);
    setHidden(detailError, !hasError);
    if (hasError) {
      setText(f("error"), [task.error_type, task.error_message].filter(Boolean).join(": "));
      setText(f("traceback"), task.traceback ?? "(no traceback recorded)");
    }
    setHidden(detailCancel, !(canMutate && CANCELLABLE.has(task.state)));
  }

  /** Refresh the open task from its own endpoint (it carries the traceback). */
  async function loadDetail(signal) {
    if (!selected || detail.hidden) return;
    if (detailSettled) return;
    const id = selected;
    try {
      const task = await actions.api.task(id, signal);
      if (id !== selected) return;
      if (task && typeof task === "object") {
        renderDetail(task);
        detailSettled = FINISHED.has(task.state);
      }
    } catch (err) {
      if (err?.status === 404 && id === selected) {
        setHidden(detailFields, true);
        setHidden(detailError, true);
        setHidden(detailCancel, true);
        setHidden(detailMissing, false);
        setText(
          detailMissing,
          `Task ${id} is not in the history any more: ` +
            "finished tasks are kept up to the pool's history size.",
        );
        detailSettled = true;
        return;
      }
      throw err;
    }
  }

  function traceUrl(traceId) {
    const template = settings?.trace_url;
    if (!template || !traceId) return null;
    return template.replaceAll("{trace_id}", encodeURIComponent(traceId));
  }

  /** The open task's live stack, refreshed by every poll while the task runs. */
  async function loadStack(signal) {
    if (!selected || detail.hidden || selectedTask?.state !== "running") return;
    const id = selected;
    try {
      const stack = await actions.api.taskStack(id, signal);
      if (id !== selected) return;
      setHidden(stackBox, false);
      setHidden(stackNote, true);
      renderStack(stackList, stack);
      setText(stackTime, `taken ${fullTime(stack?.taken_at)} · thread ${stack?.thread ?? "?"}`);
    } catch (err) {
      if (id !== selected) return;
      if (err?.status === 409 || err?.status === 404) {
        // It just finished (or left): the detail reloads and drops the live stack.
        detailSettled = false;
        setHidden(stackBox, true);
        return;
      }
      if (err?.status === 0) throw err;
      setHidden(stackBox, false);
      setHidden(stackNote, false);
      setText(stackNote, `The live stack is not available: ${err?.message ?? err}`);
    }
  }

  async function cancelTask(id) {
    try {
      const body = await actions.api.cancelTask(id);
      const result = body?.result;
      actions.announce(`Task ${shortId(id)}: ${CANCEL_RESULTS[result] ?? String(result)}.`);
      if (selected === id) detailSettled = false;
    } catch (err) {
      actions.fail(err);
    }
    actions.refresh();
  }

  // ---- options fed by the pools poll and task types ---------------------------------

  /** Keep the pool filter's options in step with the live pool list, without touching the choice. */
  function setPools(poolNames, pools = []) {
    limits.poolTimeouts = new Map(pools.map((p) => [p.name, p.run_timeout ?? null]));
    const wanted = new Set(poolNames);
    if (filters.pool) wanted.add(filters.pool);
    const existing = new Map([...poolSelect.options].filter((o) => o.value).map((o) => [o.value, o]));
    for (const [value, option] of existing) if (!wanted.has(value)) option.remove();
    for (const name of [...wanted].sort()) {
      if (existing.has(name)) continue;
      const option = el("option", { value: name }, name);
      const after = [...poolSelect.options].find((o) => o.value && o.value > name);
      poolSelect.insertBefore(option, after ?? null);
    }
    if (poolSelect.value !== filters.pool) poolSelect.value = filters.pool;
  }

  /** Registered task types (api/task-types): their own run timeouts. */
  function setTaskTypes(types) {
    limits.taskTimeouts = new Map(
      types.filter((t) => t.run_timeout !== null && t.run_timeout !== undefined).map((t) => [t.name, t.run_timeout]),
    );
  }

  function setSettings(value) {
    settings = value;
    if (selectedTask) renderDetail(selectedTask);
  }

  function setTaskNames(taskNames) {
    names.replaceChildren(...[...new Set(taskNames)].sort().map((n) => el("option", { value: n })));
  }

  function setCanMutate(value) {
    canMutate = value;
    for (const row of rows.values()) if (row.task) updateRow(row, row.task, Date.now());
    if (selectedTask) renderDetail(selectedTask);
  }

  // ---- location (the hash keeps filters, page and open task across reloads) ---------

  function toParams() {
    const params = new URLSearchParams();
    for (const key of ["pool", "state", "name", "q", "since", "sort"]) if (filters[key]) params.set(key, filters[key]);
    if (filters.page !== 1) params.set("page", String(filters.page));
    if (filters.per_page !== 20) params.set("per_page", String(filters.per_page));
    if (selected) params.set("task", selected);
    return params;
  }

  function fromParams(params) {
    filters.pool = params.get("pool") ?? "";
    filters.state = params.get("state") ?? "";
    filters.name = params.get("name") ?? "";
    filters.q = params.get("q") ?? "";
    filters.since = ["60", "300", "900", "3600"].includes(params.get("since")) ? params.get("since") : "";
    filters.sort = parseSort(params.get("sort")) ? params.get("sort") : "";
    if (document.activeElement !== searchInput) searchInput.value = filters.q;
    sinceSelect.value = filters.since;
    showSort();
    filters.page = Math.max(1, Number.parseInt(params.get("page") ?? "1", 10) || 1);
    const perPage = Number.parseInt(params.get("per_page") ?? "20", 10);
    filters.per_page = [20, 50, 100].includes(perPage) ? perPage : 20;
    if (document.activeElement !== nameInput) nameInput.value = filters.name;
    stateSelect.value = filters.state;
    perPageSelect.value = String(filters.per_page);
    setPools([...poolSelect.options].map((o) => o.value).filter(Boolean));
    generation += 1;
    const task = params.get("task");
    if (task && task !== selected) select(task, { focus: false });
    else if (!task && selected) closeDetail();
  }

  return {
    load,
    loadDetail,
    loadStack,
    setPools,
    setTaskNames,
    setTaskTypes,
    setSettings,
    setCanMutate,
    toParams,
    fromParams,
    wantsDetail: () => Boolean(selected) && !detail.hidden,
  };
}
