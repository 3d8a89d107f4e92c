// @ts-check
/**
 * Reads the server's `/metrics` (Prometheus text, as prom-client writes it) into the few figures the status
 * panel shows: images per second and mean UNet rows per call, both over the interval between two scrapes.
 */

/**
 * `name{labels}` → value, for every sample line (comments and blank lines skipped).
 * @param {string} text
 * @returns {Map<string, number>}
 */
export function parsePrometheus(text) {
  /** @type {Map<string, number>} */
  const out = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    // Label values may hold spaces; the value is after the closing brace (or the name) and one space.
    const close = line.lastIndexOf("}");
    const space = line.indexOf(" ", close < 0 ? 0 : close);
    if (space < 0) continue;
    const value = Number(line.slice(space + 1).trim().split(" ")[0]);
    if (!Number.isNaN(value) || line.slice(space + 1).trim() === "NaN") out.set(line.slice(0, space), value);
  }
  return out;
}

/**
 * Sum of every series of metric `name`, whatever its labels (0 when absent).
 * @param {Map<string, number>} samples
 * @param {string} name
 */
export function total(samples, name) {
  let sum = 0;
  for (const [key, v] of samples) if ((key === name || key.startsWith(`${name}{`)) && Number.isFinite(v)) sum += v;
  return sum;
}

/**
 * @typedef {object} MetricsSnapshot
 * @property {number} at when it was taken, ms (any clock, the same for every snapshot)
 * @property {number} images `omni_images_generated_total`
 * @property {number} rowsSum `omni_unet_batch_rows_sum`
 * @property {number} rowsCount `omni_unet_batch_rows_count` (UNet calls)
 * @property {number} queueDepth `omni_queue_depth`
 * @property {number} running `omni_requests_running`
 */

/**
 * @param {string} text the `/metrics` body
 * @param {number} at
 * @returns {MetricsSnapshot}
 */
export function snapshot(text, at) {
  const m = parsePrometheus(text);
  return {
    at,
    images: total(m, "omni_images_generated_total"),
    rowsSum: total(m, "omni_unet_batch_rows_sum"),
    rowsCount: total(m, "omni_unet_batch_rows_count"),
    queueDepth: total(m, "omni_queue_depth"),
    running: total(m, "omni_requests_running"),
  };
}

/**
 * Rates between two snapshots. Rows per call is over the interval when UNet calls ran in it, else over the
 * server's lifetime (null before the first call), so an idle server still shows how it batched.
 * @param {MetricsSnapshot | null} prev
 * @param {MetricsSnapshot} cur
 * @returns {{ imagesPerSecond: number, rowsPerCall: number | null }}
 */
export function rates(prev, cur) {
  const seconds = prev ? (cur.at - prev.at) / 1000 : 0;
  // A counter that went down means the server restarted: count from zero.
  const images = prev && cur.images >= prev.images ? cur.images - prev.images : cur.images;
  const imagesPerSecond = prev && seconds > 0 ? images / seconds : 0;
  const calls = prev && cur.rowsCount >= prev.rowsCount ? cur.rowsCount - prev.rowsCount : 0;
  let rowsPerCall = null;
  if (prev && calls > 0) rowsPerCall = (cur.rowsSum - prev.rowsSum) / calls;
  else if (cur.rowsCount > 0) rowsPerCall = cur.rowsSum / cur.rowsCount;
  return { imagesPerSecond, rowsPerCall };
}

/**
 * The server's speed: images per second of the time it spent generating (`/ui/api/status` `throughput`),
 * over the interval between two polls when it generated in it, else over its lifetime (first poll) or null
 * (idle: keep showing the last figure). Images over wall-clock time would read 0.00 a poll after a run.
 * @param {{ images: number, busySeconds: number } | null} prev
 * @param {{ images: number, busySeconds: number }} cur
 * @returns {number | null}
 */
export function busyRate(prev, cur) {
  // Totals that went down mean the server restarted: count from zero.
  const restarted = prev !== null && (cur.busySeconds < prev.busySeconds || cur.images < prev.images);
  const from = prev === null || restarted ? { images: 0, busySeconds: 0 } : prev;
  const seconds = cur.busySeconds - from.busySeconds;
  return seconds > 0 ? (cur.images - from.images) / seconds : null;
}
