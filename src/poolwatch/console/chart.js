// Per-pool sample history and the two small sparklines drawn from it.
//
// The API gives cumulative counters (succeeded, failed); rates come from the differences
// between successive polls, divided by the time between them as measured in the browser.

export const WINDOW_MS = 5 * 60 * 1000; // what the charts show at most
const MIN_SPAN_MS = 60 * 1000; // a young history is drawn over at least this span
const RATE_WINDOW_MS = 10 * 1000; // what the throughput and failure-rate figures average over
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
    // Counters only grow; if they went down, the pool was removed and created again.
    if (last && (pool.succeeded < last.succeeded || pool.failed < last.failed)) this.samples = [];
    this.samples.push({ t, queued: pool.queued, succeeded: pool.succeeded, failed: pool.failed });
    const cutoff = t - WINDOW_MS - GAP_MS;
    let drop = 0;
    while (drop < this.samples.length - 1 && this.samples[drop].t < cutoff) drop += 1;
    if (drop) this.samples.splice(0, drop);
  }

  /**
   * Completions per second and the failed fraction of them over the last few seconds,
   * or nulls until two polls exist.
   */
  rates() {
    const n = this.samples.length;
    if (n < 2) return { throughput: null, failureRate: null };
    const last = this.samples[n - 1];
    let first = this.samples[n - 2];
    for (let i = n - 2; i >= 0; i -= 1) {
      if (last.t - this.samples[i].t > RATE_WINDOW_MS) break;
      first = this.samples[i];
    }
    const seconds = (last.t - first.t) / 1000;
    if (seconds <= 0) return { throughput: null, failureRate: null };
    const failed = last.failed - first.failed;
    const done = last.succeeded - first.succeeded + failed;
    return { throughput: done / seconds, failureRate: done > 0 ? failed / done : null };
  }

  /** The time the charts start at: five minutes back, or the first sample if later. */
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
      if (seconds > 0) out.push([b.t, (b.succeeded - a.succeeded + b.failed - a.failed) / seconds]);
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
