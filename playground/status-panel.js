// @ts-check
import { getApi } from "./lib/api.js";
import { pushBounded, sparklinePath } from "./lib/chart.js";
import { busyRate, rates, snapshot } from "./lib/metrics.js";

/** How often the panel polls `/ui/api/status` and `/metrics`, ms. */
const POLL_MS = 2_000;
/** Points of the chart: two minutes at the poll interval. */
const CHART_POINTS = 60;

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * The status panel: model, executor, endpoint health, queue, the server's images/s while generating (from
 * the status' throughput), rows per UNet call from `/metrics`, and a live chart of images/s over wall-clock
 * time. Polls while started; a failed poll shows why and stops
 * (a wrong key would fail every time) until {@link StatusPanel.start} is called again.
 */
export class StatusPanel {
  /**
   * @param {() => string} getKey
   * @param {(status: any) => void} onStatus each status answer (null after a failed poll)
   * @param {(err: unknown) => void} onError why a poll failed
   */
  constructor(getKey, onStatus, onError) {
    this.getKey = getKey;
    this.onStatus = onStatus;
    this.onError = onError;
    /** @type {import("./lib/metrics.js").MetricsSnapshot | null} */
    this.prev = null;
    /** @type {number[]} */
    this.series = [];
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.generation = 0;
    /** @type {{ images: number, busySeconds: number } | null} */
    this.prevThroughput = null;
  }

  /** (Re)starts polling now. */
  start() {
    this.stop();
    const generation = ++this.generation;
    const tick = async () => {
      const ok = await this.refresh();
      if (ok && generation === this.generation) this.timer = setTimeout(tick, POLL_MS);
    };
    void tick();
  }

  stop() {
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One poll; resolves false when it failed (the reason is on the panel). */
  async refresh() {
    const key = this.getKey();
    try {
      const [status, metrics] = await Promise.all([getApi("/ui/api/status", key), getApi("/metrics", key, { text: true })]);
      this.onStatus(status);
      this.render(status, metrics);
      return true;
    } catch (err) {
      byId("status-model").textContent = `unavailable: ${err instanceof Error ? err.message : String(err)}`;
      this.onStatus(null);
      this.onError(err);
      return false;
    }
  }

  /** @param {any} status @param {string} metricsText */
  render(status, metricsText) {
    byId("status-model").textContent = `${status.model.id}${status.model.nativeSize ? ` (${status.model.nativeSize} native)` : ""}`;
    byId("status-executor").textContent = `${status.executor.name} · ${status.executor.batching} batching${status.refusal ? ` · refusing: ${status.refusal}` : ""}`;
    const list = byId("status-endpoints");
    list.replaceChildren();
    /** @type {{ endpoint: string, state: string, restarts: number }[]} */
    const endpoints = status.endpoints;
    for (const e of endpoints) {
      const li = document.createElement("li");
      li.className = /^(ready|closed|healthy|ok)$/.test(e.state) ? "state-ok" : "state-bad";
      li.textContent = `${e.endpoint}: ${e.state}${e.restarts ? ` (${e.restarts} restarts)` : ""}`;
      list.append(li);
    }
    if (endpoints.length === 0) list.textContent = "not reported";
    byId("status-queue").textContent = `${status.queue.depth} waiting · ${status.queue.running} running`;
    const cur = snapshot(metricsText, performance.now());
    const r = rates(this.prev, cur);
    this.prev = cur;
    // The speed while generating, kept while idle: the last figure stays until the server generates again.
    const speed = busyRate(this.prevThroughput, status.throughput);
    this.prevThroughput = status.throughput;
    if (speed !== null) byId("status-rate").textContent = speed.toFixed(2);
    byId("status-rows").textContent = r.rowsPerCall === null ? "–" : r.rowsPerCall.toFixed(1);
    pushBounded(this.series, r.imagesPerSecond, CHART_POINTS);
    byId("status-chart-line").setAttribute("d", sparklinePath(this.series, 240, 58, 1));
  }
}
