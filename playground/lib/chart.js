// @ts-check
/** The status panel's live chart: an SVG polyline, computed here so the drawing needs no chart library. */

/**
 * The `d` of an SVG path through `values`, oldest left, newest at the right edge, scaled so the largest
 * (or `max`, when larger) touches the top. Empty for no values.
 * @param {number[]} values
 * @param {number} width
 * @param {number} height
 * @param {number} [max]
 */
export function sparklinePath(values, width, height, max = 0) {
  if (values.length === 0) return "";
  const top = Math.max(max, ...values) || 1;
  const dx = values.length > 1 ? width / (values.length - 1) : 0;
  return values
    .map((v, i) => {
      const x = values.length > 1 ? i * dx : width;
      const y = height - (Math.max(0, v) / top) * height;
      return `${i === 0 ? "M" : "L"}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

/**
 * Keeps the last `capacity` values.
 * @param {number[]} series
 * @param {number} value
 * @param {number} capacity
 */
export function pushBounded(series, value, capacity) {
  series.push(value);
  if (series.length > capacity) series.splice(0, series.length - capacity);
  return series;
}
