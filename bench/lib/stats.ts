/** Order statistics for the micro-benchmarks (nearest-rank on a sorted copy). */

export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

export function median(values: readonly number[]): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Parses an integer flag; exits with a usage message when it is not an integer >= min. */
export function intFlag(name: string, value: string | undefined, min: number): number {
  const v = Number(value);
  if (!Number.isInteger(v) || v < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${String(value)}`);
    process.exit(2);
  }
  return v;
}

/** Parses a comma-separated list of positive integers ("1,4,16"). */
export function intListFlag(name: string, value: string | undefined): number[] {
  const list = String(value ?? "")
    .split(",")
    .map((s) => Number(s.trim()));
  if (!list.length || list.some((v) => !Number.isInteger(v) || v < 1)) {
    console.error(`--${name} must be a comma-separated list of positive integers, got ${String(value)}`);
    process.exit(2);
  }
  return list;
}

/** Right-aligned table: first row is the header. */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? "").length)));
  return cells.map((r) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join("  ")).join("\n");
}
