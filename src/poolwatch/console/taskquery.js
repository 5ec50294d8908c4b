// What the tasks view does in the browser on top of the API's filters: substring search,
// a time filter, sorting by any column, and telling overdue tasks apart. Pure functions,
// so they are tested on their own.

import { count, toMillis } from "./format.js";

// With a search, a time filter or a sort the browser filters the newest tasks the API
// gives for the other filters: up to this many, in pages of the API's largest size.
export const SCAN_LIMIT = 1000;
const SCAN_PAGE = 200;

/** Sortable columns: key -> [label, value of a task at `now` (epoch ms)]. */
export const SORT_KEYS = {
  id: ["Task", (t) => t.id],
  name: ["Name", (t) => t.name ?? ""],
  pool: ["Pool", (t) => t.pool ?? ""],
  state: ["State", (t) => t.state ?? ""],
  submitted: ["Submitted", (t) => toMillis(t.submitted_at) ?? 0],
  wait: ["Wait", (t, now) => elapsed(t.queue_wait, t.state === "queued" ? t.submitted_at : null, now)],
  run: ["Run", (t, now) => elapsed(t.run_time, t.state === "running" ? t.started_at : null, now)],
};

function elapsed(measured, since, now) {
  if (measured !== null && measured !== undefined) return measured;
  const start = toMillis(since);
  return start === null ? -1 : Math.max(0, (now - start) / 1000);
}

/** "run:desc" -> { key: "run", dir: "desc" }; anything unknown -> null (server order). */
export function parseSort(text) {
  const [key, dir = "asc"] = String(text ?? "").split(":");
  if (!(key in SORT_KEYS) || (dir !== "asc" && dir !== "desc")) return null;
  return { key, dir };
}

/** A sorted copy; ties keep the server's order (newest first). */
export function sortTasks(items, sort, now) {
  if (!sort) return items.slice();
  const value = SORT_KEYS[sort.key][1];
  const sign = sort.dir === "desc" ? -1 : 1;
  return items
    .map((task, index) => ({ task, index, v: value(task, now) }))
    .sort((a, b) => {
      const c =
        typeof a.v === "number" && typeof b.v === "number"
          ? a.v - b.v
          : String(a.v).localeCompare(String(b.v), undefined, { numeric: true });
      return c ? sign * c : a.index - b.index;
    })
    .map((x) => x.task);
}

/** True when `query` (case-insensitive) is part of the task's name or its error. */
export function matchesSearch(task, query) {
  const q = String(query ?? "").trim().toLowerCase();
  if (!q) return true;
  return [task.name, task.error_type, task.error_message]
    .some((text) => typeof text === "string" && text.toLowerCase().includes(q));
}

/** True when the task was submitted within the last `seconds` (empty: any time). */
export function withinTime(task, seconds, now) {
  if (!seconds) return true;
  const at = toMillis(task.submitted_at);
  return at !== null && now - at <= Number(seconds) * 1000;
}

/**
 * Whether a task is overdue: it carries the stack taken when it passed its run timeout
 * (`overdue_stack`), or it is running for longer than its run timeout: the task type's
 * own when it was registered with one, else its pool's. A cancel request alone is not
 * overdue (people cancel tasks that are on time).
 */
export function isOverdue(task, { taskTimeouts, poolTimeouts }, now) {
  if (task.overdue_stack) return true;
  if (task.state !== "running") return false;
  const limit = taskTimeouts.get(task.name) ?? poolTimeouts.get(task.pool);
  if (limit === null || limit === undefined) return false;
  const started = toMillis(task.started_at);
  return started !== null && (now - started) / 1000 > limit;
}

/**
 * One page of the tasks view with a search, time filter or sort: the newest tasks for
 * the API's filters (`fetchPage(page, perPage)`, up to SCAN_LIMIT), then `filters.q`,
 * `filters.since` and `filters.sort` applied here, and paged by `filters.page` and
 * `filters.per_page`. `scope` says when older tasks were left out.
 */
export async function scanTasks(fetchPage, filters) {
  const first = await fetchPage(1, SCAN_PAGE);
  const seen = first?.pagination?.total ?? 0;
  const pages = Math.ceil(Math.min(seen, SCAN_LIMIT) / SCAN_PAGE);
  const rest = await Promise.all(Array.from({ length: Math.max(0, pages - 1) }, (_, i) => fetchPage(i + 2, SCAN_PAGE)));
  const byId = new Map();
  for (const page of [first, ...rest]) for (const t of page?.data ?? []) byId.set(t.id, t);
  const now = Date.now();
  const matched = sortTasks(
    [...byId.values()].filter((t) => matchesSearch(t, filters.q) && withinTime(t, filters.since, now)),
    parseSort(filters.sort),
    now,
  );
  const per = filters.per_page;
  const start = (filters.page - 1) * per;
  const scope =
    seen > byId.size
      ? `Search, time filter and sorting apply to the newest ${count(byId.size)} of ${count(seen)} tasks ` +
        "that match the other filters; narrow those to reach older ones."
      : "";
  const totalPages = Math.ceil(matched.length / per);
  return {
    data: matched.slice(start, start + per),
    pagination: {
      page: filters.page,
      per_page: per,
      total: matched.length,
      total_pages: totalPages,
      has_prev: filters.page > 1,
      has_next: filters.page < totalPages,
    },
    scope,
  };
}
