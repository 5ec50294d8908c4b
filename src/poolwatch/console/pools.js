// The pools view: one card per pool, keyed by pool name and updated in place.

import { PoolHistory, drawSparkline } from "./chart.js";
import {
  count,
  duration,
  el,
  percent,
  rate,
  setAttr,
  setHidden,
  setText,
  stateLabel,
  toMillis,
} from "./format.js";

const WHOLE_NUMBER = /^\d+$/;

/**
 * @param {object} deps
 * @param {HTMLElement} deps.list      where the cards live
 * @param {HTMLTemplateElement} deps.template
 * @param {HTMLElement} deps.empty     shown when there are no pools
 * @param {HTMLElement} deps.summary   one line of totals
 * @param {object} deps.actions        patch(name, changes), shutdown(name, cancelPending),
 *                                     confirmShutdown(name, pool), announce(text), explain(err)
 */
/** The link from a pool to its Grafana dashboard, or null when no Grafana URL is set. */
export function grafanaLink(settings, pool) {
  const base = settings?.grafana_url;
  if (!base) return null;
  if (base.includes("{pool}")) return base.replaceAll("{pool}", encodeURIComponent(pool));
  const path = settings.grafana_dashboard_path ?? "/d/poolwatch-pool/poolwatch-pool";
  const url = new URL(base.replace(/\/+$/, "") + path);
  url.searchParams.set("var-pool", pool);
  return url.toString();
}

export function createPoolsView({ list, template, empty, summary, actions }) {
  const cards = new Map(); // pool name -> { root, history, pool, and the card's elements }
  let canMutate = true;
  let settings = null; // api/console: links to build
  let seedBody = null; // api/samples, applied to each card once
  let latencyBody = null; // api/latency

  function field(root, name) {
    return root.querySelector(`[data-field="${name}"]`);
  }

  function build(name) {
    const root = template.content.firstElementChild.cloneNode(true);
    const titleId = `pool-${name}-title`;
    root.id = `pool-${name}`;
    root.dataset.pool = name;
    root.setAttribute("aria-labelledby", titleId);
    const title = root.querySelector(".pool-name");
    title.id = titleId;
    title.textContent = name;

    const card = {
      root,
      history: new PoolHistory(),
      pool: null,
      busy: false,
      error: root.querySelector(".pool-error"),
      state: field(root, "state"),
      kind: field(root, "kind"),
      workers: field(root, "workers"),
      queue: field(root, "queue"),
      workersBar: root.querySelector('[data-bar="workers"]'),
      queueBar: root.querySelector('[data-bar="queue"]'),
      throughput: field(root, "throughput"),
      failureRate: field(root, "failure_rate"),
      succeeded: field(root, "succeeded"),
      failed: field(root, "failed"),
      cancelled: field(root, "cancelled"),
      rejected: field(root, "rejected"),
      oldest: field(root, "oldest"),
      overdue: field(root, "overdue"),
      overdueBadge: field(root, "overdue_badge"),
      grafana: field(root, "grafana"),
      queueTimeouts: field(root, "queue_timeouts"),
      runTimeouts: field(root, "run_timeouts"),
      latencyCaption: field(root, "latency_caption"),
      latencyRows: {
        queue_wait: root.querySelectorAll('[data-latency="queue_wait"] td'),
        run_time: root.querySelectorAll('[data-latency="run_time"] td'),
      },
      latencyTasks: field(root, "latency_tasks"),
      latencyTasksBox: root.querySelector(".latency-tasks"),
      queueSvg: root.querySelector(".spark-queue svg"),
      doneSvg: root.querySelector(".spark-done svg"),
      queueValue: field(root, "chart_queue"),
      doneValue: field(root, "chart_done"),
      charts: root.querySelector(".charts"),
      chartCaption: root.querySelector(".chart-caption"),
      forms: {
        max_workers: root.querySelector('form[data-control="max_workers"]'),
        queue_capacity: root.querySelector('form[data-control="queue_capacity"]'),
      },
      pauseButton: root.querySelector('[data-control="pause"]'),
      shutdownButton: root.querySelector('[data-control="shutdown"]'),
      controls: root.querySelector(".pool-controls"),
    };

    for (const [key, form] of Object.entries(card.forms)) {
      const input = form.elements.value;
      // Polls never overwrite what the user is typing: an edited input stays "dirty"
      // until it is applied or reverted with Escape.
      input.addEventListener("input", () => {
        input.dataset.dirty = "1";
      });
      input.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && input.dataset.dirty) {
          delete input.dataset.dirty;
          input.value = currentValue(card.pool, key);
          showError(card, "");
          event.preventDefault();
        }
      });
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        applySetting(card, key, input);
      });
    }
    card.pauseButton.addEventListener("click", () => togglePause(card));
    card.shutdownButton.addEventListener("click", () => shutdown(card));
    return card;
  }

  function currentValue(pool, key) {
    if (!pool) return "";
    const value = pool[key];
    return value === null || value === undefined ? "" : String(value);
  }

  function syncInput(input, value) {
    if (input.dataset.dirty || document.activeElement === input) return;
    if (input.value !== value) input.value = value;
  }

  function showError(card, message) {
    // Shown before it is filled, so the alert is announced; emptied before it is hidden.
    if (message) setHidden(card.error, false);
    setText(card.error, message);
    if (!message) setHidden(card.error, true);
  }

  function parseSetting(key, input) {
    const raw = input.value.trim();
    if (input.validity.badInput) {
      return { error: `${key === "max_workers" ? "Max workers" : "Queue capacity"} must be a whole number.` };
    }
    if (key === "max_workers") {
      if (!WHOLE_NUMBER.test(raw)) {
        return { error: "Max workers must be a whole number of at least 1, e.g. 4." };
      }
      return { value: Number(raw) };
    }
    if (raw === "") return { value: null };
    if (!WHOLE_NUMBER.test(raw)) {
      return { error: "Queue capacity must be a whole number, or empty for an unbounded queue." };
    }
    return { value: Number(raw) };
  }

  async function run(card, button, work) {
    if (card.busy) return;
    card.busy = true;
    setAttr(button, "aria-disabled", "true");
    setAttr(card.root, "aria-busy", "true");
    try {
      await work();
    } catch (err) {
      showError(card, actions.explain(err));
    } finally {
      card.busy = false;
      setAttr(button, "aria-disabled", null);
      setAttr(card.root, "aria-busy", null);
      refreshControls(card);
    }
  }

  function applySetting(card, key, input) {
    const parsed = parseSetting(key, input);
    if (parsed.error) {
      showError(card, parsed.error);
      input.focus();
      return;
    }
    const button = card.forms[key].querySelector("button");
    run(card, button, async () => {
      const name = card.root.dataset.pool;
      const pool = await actions.patch(name, { [key]: parsed.value });
      showError(card, "");
      delete input.dataset.dirty;
      if (pool && typeof pool === "object" && pool.name === name) updateCard(card, pool, false);
      const what =
        key === "max_workers"
          ? `max workers set to ${parsed.value}`
          : `queue capacity set to ${parsed.value ?? "unbounded"}`;
      actions.announce(`Pool ${name}: ${what}.`);
    });
  }

  function togglePause(card) {
    const pool = card.pool;
    if (!pool || !isMutable(pool)) return;
    const pausing = pool.state !== "paused";
    run(card, card.pauseButton, async () => {
      const name = card.root.dataset.pool;
      const updated = await actions.patch(name, { paused: pausing });
      showError(card, "");
      if (updated && typeof updated === "object" && updated.name === name) updateCard(card, updated, false);
      else if (card.pool) updateCard(card, { ...card.pool, state: pausing ? "paused" : "running" }, false);
      const what = pausing ? "paused: queued tasks wait until it is resumed" : "resumed";
      actions.announce(`Pool ${name} ${what}.`);
    });
  }

  function shutdown(card) {
    const pool = card.pool;
    if (!pool || !isMutable(pool) || card.busy) return;
    const name = card.root.dataset.pool;
    actions.confirmShutdown(name, pool).then((choice) => {
      if (!choice.confirmed) return;
      run(card, card.shutdownButton, async () => {
        setText(card.state, "Shutting down");
        card.state.dataset.state = "shutting_down";
        const final = await actions.shutdown(name, choice.cancelPending);
        remove(name);
        const tail = final && typeof final === "object" && "succeeded" in final
          ? ` Final counts: ${count(final.succeeded)} succeeded, ${count(final.failed)} failed, ` +
            `${count(final.cancelled)} cancelled.`
          : "";
        actions.announce(`Pool ${name} shut down and removed.${tail}`);
      });
    });
  }

  function isMutable(pool) {
    return pool.state === "running" || pool.state === "paused";
  }

  function refreshControls(card) {
    const pool = card.pool;
    if (!pool) return;
    const mutable = isMutable(pool);
    setHidden(card.controls, !canMutate);
    setText(card.pauseButton, pool.state === "paused" ? "Resume" : "Pause");
    const formButtons = Object.values(card.forms).map((f) => f.querySelector("button"));
    for (const button of [card.pauseButton, card.shutdownButton, ...formButtons]) {
      const disabled = !mutable;
      if (button.disabled !== disabled) button.disabled = disabled;
    }
    for (const form of Object.values(card.forms)) {
      const input = form.elements.value;
      if (input.disabled !== !mutable) input.disabled = !mutable;
    }
  }

  function updateCard(card, pool, sample = true, now = Date.now()) {
    card.pool = pool;
    if (sample) card.history.add(now, pool);
    if (sample && seedBody) seedCard(card, pool.name);

    setText(card.state, stateLabel(pool.state));
    card.state.dataset.state = pool.state;
    // Thread pools, the default, carry no badge; other kinds say where their tasks run.
    card.kind.hidden = !pool.kind || pool.kind === "thread";
    setText(card.kind, pool.kind || "");
    card.kind.title = `Pool kind: ${pool.kind || "thread"}`;
    setText(card.workers, `${pool.active} / ${pool.workers} / ${pool.max_workers}`);
    const cap = pool.queue_capacity;
    setText(card.queue, `${count(pool.queued)} / ${cap === null || cap === undefined ? "∞" : count(cap)}`);
    // A busy pool is healthy, so only the queue bar turns amber and red as it fills.
    setBar(card.workersBar, pool.max_workers ? pool.active / pool.max_workers : 0, false);
    setBar(card.queueBar, cap ? pool.queued / cap : 0, true);

    const { throughput, failureRate } = card.history.rates();
    setText(card.throughput, rate(throughput));
    setText(card.failureRate, percent(failureRate));
    let level = "";
    if (failureRate >= 0.1) level = "bad";
    else if (failureRate > 0) level = "warn";
    card.failureRate.dataset.level = level;
    setText(card.succeeded, count(pool.succeeded));
    setText(card.failed, count(pool.failed));
    setText(card.cancelled, count(pool.cancelled));
    setText(card.rejected, count(pool.rejected));
    setText(card.oldest, pool.queued > 0 ? duration(pool.oldest_queued_age) : "—");
    setText(card.overdue, count(pool.overdue));
    card.overdue.dataset.level = pool.overdue > 0 ? "bad" : "";
    card.root.classList.toggle("has-overdue", pool.overdue > 0);
    setText(card.overdueBadge, pool.overdue > 0 ? `${count(pool.overdue)} overdue` : "");
    setHidden(card.overdueBadge, !(pool.overdue > 0));
    setText(card.queueTimeouts, count(pool.queue_timeouts));
    setText(card.runTimeouts, count(pool.run_timeouts));
    card.runTimeouts.dataset.level = pool.run_timeouts > 0 ? "warn" : "";
    const link = grafanaLink(settings, pool.name);
    setHidden(card.grafana, !link);
    if (link) setAttr(card.grafana, "href", link);
    renderLatency(card);

    const start = card.history.chartStart(now);
    const queuePeak = drawSparkline(card.queueSvg, card.history.queueSeries(), start, now);
    const donePeak = drawSparkline(card.doneSvg, card.history.completionSeries(), start, now);
    const spanText = spanLabel(now - start);
    setText(card.chartCaption, spanText);
    setText(card.queueValue, `${count(pool.queued)} (peak ${count(queuePeak)})`);
    setText(card.doneValue, `${rate(throughput)} (peak ${rate(donePeak)})`);
    setAttr(
      card.charts,
      "aria-label",
      `${spanText}: queue depth now ${pool.queued}, peak ${queuePeak}; ` +
        `completions ${rate(throughput)}, peak ${rate(donePeak)}.`,
    );

    syncInput(card.forms.max_workers.elements.value, currentValue(pool, "max_workers"));
    syncInput(card.forms.queue_capacity.elements.value, currentValue(pool, "queue_capacity"));
    refreshControls(card);
  }

  function seedCard(card, name) {
    const item = seedBody.data?.find?.((d) => d.pool === name);
    const start = toMillis(item?.start);
    if (item && start !== null) card.history.seed(start, (seedBody.interval ?? 1) * 1000, item.values ?? {});
  }

  function latencyCells(cells, values) {
    const none = !values || !values.count;
    ["p50", "p95", "p99"].forEach((key, i) => setText(cells[i], none ? "—" : duration(values[key])));
  }

  function renderLatency(card) {
    const name = card.root.dataset.pool;
    const item = latencyBody?.data?.find?.((d) => d.pool === name);
    const window = latencyBody?.window;
    setText(card.latencyCaption, window ? `Latency · last ${spanWords(window)}` : "Latency");
    latencyCells(card.latencyRows.queue_wait, item?.queue_wait);
    latencyCells(card.latencyRows.run_time, item?.run_time);
    const tasks = (item?.tasks ?? []).filter((t) => t.count > 0);
    setHidden(card.latencyTasksBox, tasks.length === 0);
    const key = JSON.stringify(tasks);
    if (card.latencyTasks.dataset.key === key) return;
    card.latencyTasks.dataset.key = key;
    card.latencyTasks.replaceChildren(
      ...tasks.map((t) => {
        const tr = el("tr");
        tr.append(el("th", { scope: "row", className: "mono" }, t.name));
        for (const q of ["p50", "p95", "p99"]) tr.append(el("td", { className: "num" }, duration(t[q])));
        return tr;
      }),
    );
  }

  function spanWords(seconds) {
    return seconds >= 120 ? `${Math.round(seconds / 60)} min` : seconds >= 60 ? "1 min" : `${seconds} s`;
  }

  function setBar(bar, fraction, levels) {
    const width = `${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
    if (bar.style.width !== width) bar.style.width = width;
    const level = !levels ? "" : fraction >= 0.9 ? "bad" : fraction >= 0.7 ? "warn" : "";
    if (bar.dataset.level !== level) bar.dataset.level = level;
  }

  function spanLabel(ms) {
    const seconds = Math.round(ms / 1000);
    return seconds >= 90 ? `Last ${Math.round(seconds / 60)} minutes` : `Last ${seconds} seconds`;
  }

  function remove(name) {
    const card = cards.get(name);
    if (!card) return;
    const hadFocus = card.root.contains(document.activeElement);
    card.root.remove();
    cards.delete(name);
    if (hadFocus) document.getElementById("pools-title")?.focus();
  }

  /** Apply one poll's pool list. */
  function update(pools, now = Date.now()) {
    const seen = new Set();
    pools.forEach((pool, index) => {
      seen.add(pool.name);
      let card = cards.get(pool.name);
      if (!card) {
        card = build(pool.name);
        cards.set(pool.name, card);
      }
      updateCard(card, pool, true, now);
      // Insert new cards where they belong; existing ones stay put unless the order changed.
      const at = list.children[index];
      if (at !== card.root) list.insertBefore(card.root, at ?? null);
    });
    for (const name of [...cards.keys()]) if (!seen.has(name)) remove(name);

    setHidden(empty, pools.length > 0);
    const active = pools.reduce((n, p) => n + p.active, 0);
    const queued = pools.reduce((n, p) => n + p.queued, 0);
    let throughput = 0;
    for (const card of cards.values()) throughput += card.history.rates().throughput ?? 0;
    setText(
      summary,
      pools.length
        ? `${pools.length} ${pools.length === 1 ? "pool" : "pools"} · ${count(active)} busy workers · ` +
          `${count(queued)} queued · ${rate(throughput)}`
        : "",
    );
  }

  function setCanMutate(value) {
    canMutate = value;
    for (const card of cards.values()) refreshControls(card);
  }

  /** The console settings (api/console): the Grafana link of each pool. */
  function setSettings(value) {
    settings = value;
    for (const card of cards.values()) if (card.pool) updateCard(card, card.pool, false);
  }

  /** The server's samples (api/samples), put before each card's first polls. */
  function seed(body) {
    seedBody = body;
    for (const [name, card] of cards) seedCard(card, name);
  }

  /** Latency quantiles per pool (api/latency). */
  function setLatency(body) {
    latencyBody = body;
    for (const card of cards.values()) renderLatency(card);
  }

  return { update, setCanMutate, setSettings, seed, setLatency };
}
