// Per-pool sample history and the two small sparklines drawn from it.
//
// The API gives cumulative counters (succeeded, failed, cancelled); rates come from the
// differences between successive polls, divided by the time between them as measured in
// the browser. When the page opens, the server's own samples of the last fifteen minutes
// (api/samples, one a second) are put in front of the first poll, so the charts are full
// at once.

export const WINDOW_MS = 15 * 60 * 1000; // what the charts show at most
const MIN_SPAN_MS = 60 * 1000; // a young history is drawn over at least this span
export const THROUGHPUT_WINDOW_MS = 10 * 1000; // what the throughput figure averages over
export const FAILURE_WINDOW_MS = 60 * 1000; // what the failure rate is taken over
const GAP_MS = 5 * 1000; // a longer silence between samples breaks the line instead of bridging it
const VIEW_W = 300;
const VIEW_H = 40;
const PAD = 2;

export class PoolHistory {
  constructor() {
    this.samples = [];
  }

  /** Record one poll of a pool object taken at `t` (epoch ms). */
  add(t, pool) {
    const last = this.samples.at(-1);
    const done = pool.succeeded + pool.failed + (pool.cancelled ?? 0);
    // Counters only grow; if they went down, the pool was removed and created again.
    if (last && (done < last.done || pool.failed < last.failed)) this.samples = [];
    this.samples.push({ t, queued: pool.queued, done, failed: pool.failed });
    const cutoff = t - WINDOW_MS - GAP_MS;
    let drop = 0;
    while (drop < this.samples.length - 1 && this.samples[drop].t < cutoff) drop += 1;
    if (drop) this.samples.splice(0, drop);
  }

  /**
   * Put the server's samples (api/samples: one a second from `startMs`, counters as
   * increments) before the polls recorded so far, counting the cumulative totals
   * backwards from the first poll. Only a history with no earlier seed takes it.
   */
  seed(startMs, intervalMs, values) {
    const first = this.samples[0];
    if (!first || this.seeded) return;
    this.seeded = true;
    const queued = values.queued ?? [];
    const completed = values.completed ?? [];
    const failed = values.failed ?? [];
    const n = Math.min(queued.length, completed.length, failed.length);
    const older = [];
    let last = n - 1;
    while (last >= 0 && startMs + last * intervalMs >= first.t) last -= 1; // polls are exact
    if (last < 0) return;
    // Between the last sample and the first poll the pool went on at the last second's
    // pace (unknown exactly; assuming no completions would draw a dip at the seam).
    const gap = (first.t - (startMs + last * intervalMs)) / intervalMs;
    let done = first.done - Math.round(completed[last] * gap);
    let failures = first.failed - Math.round(failed[last] * gap);
    for (let i = last; i >= 0; i -= 1) {
      const t = startMs + i * intervalMs;
      older.push({ t, queued: queued[i], done, failed: failures });
      done -= completed[i];
      failures -= failed[i];
    }
    older.reverse();
    const cutoff = first.t - WINDOW_MS - GAP_MS;
    this.samples = [...older.filter((s) => s.t >= cutoff), ...this.samples];
  }

  /** The change of counters over about the last `windowMs`, or null under two samples. */
  delta(windowMs) {
    const n = this.samples.length;
    if (n < 2) return null;
    const last = this.samples[n - 1];
    let first = this.samples[n - 2];
    for (let i = n - 2; i >= 0; i -= 1) {
      if (last.t - this.samples[i].t > windowMs) break;
      first = this.samples[i];
    }
    const seconds = (last.t - first.t) / 1000;
    if (seconds <= 0) return null;
    return { seconds, done: last.done - first.done, failed: last.failed - first.failed };
  }

  /**
   * Completions per second over the last ten seconds, and the failed fraction of the
   * completions of the last minute; nulls until two polls exist.
   */
  rates() {
    const recent = this.delta(THROUGHPUT_WINDOW_MS);
    const minute = this.delta(FAILURE_WINDOW_MS);
    return {
      throughput: recent ? recent.done / recent.seconds : null,
      failureRate: minute && minute.done > 0 ? minute.failed / minute.done : null,
    };
  }

  /** The time the charts start at: fifteen minutes back, or the first sample if later. */
  chartStart(now) {
    const first = this.samples[0]?.t ?? now;
    return Math.max(now - WINDOW_MS, Math.min(first, now - MIN_SPAN_MS));
  }

  /** Queue depth at each sample: [[t, value], ...]. */
  queueSeries() {
    return this.samples.map((s) => [s.t, s.queued]);
  }

  /** Completions per second between successive samples: [[t, value], ...]. */
  completionSeries() {
    const out = [];
    for (let i = 1; i < this.samples.length; i += 1) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      const seconds = (b.t - a.t) / 1000;
      if (seconds > 0) out.push([b.t, (b.done - a.done) / seconds]);
    }
    return out;
  }
}

/**
 * Draw `series` into a sparkline's two paths (line and filled area) for the span from
 * `start` to `now`. Returns the peak value drawn so the caller can label the scale.
 */
export function drawSparkline(svg, series, start, now) {
  const span = Math.max(1, now - start);
  const visible = series.filter(([t]) => t >= start - GAP_MS); // the SVG clips what falls left
  const peak = visible.reduce((m, [, v]) => Math.max(m, v), 0);
  const scale = peak > 0 ? peak : 1;
  const x = (t) => (((t - start) / span) * VIEW_W).toFixed(1);
  const y = (v) => (VIEW_H - PAD - (v / scale) * (VIEW_H - 2 * PAD)).toFixed(1);

  let line = "";
  let area = "";
  let run = [];
  const flush = () => {
    if (run.length === 0) return;
    line += run.map(([t, v], i) => `${i ? "L" : "M"}${x(t)} ${y(v)}`).join("");
    const first = run[0];
    const last = run[run.length - 1];
    const top = run.map(([t, v]) => `L${x(t)} ${y(v)}`).join("");
    area += `M${x(first[0])} ${VIEW_H}${top}L${x(last[0])} ${VIEW_H}Z`;
    run = [];
  };
  let prevT = null;
  for (const point of visible) {
    if (prevT !== null && point[0] - prevT > GAP_MS) flush();
    run.push(point);
    prevT = point[0];
  }
  flush();

  const linePath = svg.querySelector(".spark-line");
  const areaPath = svg.querySelector(".spark-area");
  if (linePath.getAttribute("d") !== line) linePath.setAttribute("d", line);
  if (areaPath.getAttribute("d") !== area) areaPath.setAttribute("d", area);
  return peak;
}
