/**
 * The tiny-shapes vocabulary and the same shape geometry as training/tiny-shapes/data.py, in TypeScript,
 * so the fidelity classifier can match generated images against ideal shapes.
 */
export const COLORS: Record<string, [number, number, number]> = {
  red: [220, 30, 30],
  green: [30, 170, 50],
  blue: [30, 60, 220],
  yellow: [240, 220, 30],
  orange: [245, 140, 20],
  purple: [140, 40, 180],
  white: [245, 245, 245],
  black: [15, 15, 15],
};
export const COLOR_NAMES = Object.keys(COLORS);
export const SHAPES = ["circle", "square", "triangle", "star", "cross"] as const;
export type Shape = (typeof SHAPES)[number];

/** Whether point (x, y), relative to the shape's centre, is inside a shape of 'radius' r (y grows downwards). */
export function inside(shape: Shape, x: number, y: number, r: number): boolean {
  switch (shape) {
    case "circle":
      return x * x + y * y <= r * r;
    case "square": {
      const h = r * 0.85;
      return Math.abs(x) <= h && Math.abs(y) <= h;
    }
    case "triangle": {
      const R = r * 1.15;
      const top = -R;
      const base = R * 0.5;
      const halfW = (base - top) / Math.sqrt(3);
      const t = (y - top) / (base - top);
      return t >= 0 && t <= 1 && Math.abs(x) <= t * halfW;
    }
    case "star": {
      const R = r * 1.15;
      const rin = R * 0.42;
      const theta = Math.atan2(x, -y);
      const rho = Math.hypot(x, y);
      const sector = (2 * Math.PI) / 5;
      const m = (((theta + sector / 2) % sector) + sector) % sector;
      const phi = Math.abs(m - sector / 2);
      const px = rho * Math.cos(phi);
      const py = rho * Math.sin(phi);
      const bx = rin * Math.cos(sector / 2);
      const by = rin * Math.sin(sector / 2);
      return (bx - R) * py - by * (px - R) >= 0; // the origin side of the edge from outer to inner vertex
    }
    case "cross": {
      const w = r * 0.36;
      return (Math.abs(x) <= w && Math.abs(y) <= r) || (Math.abs(y) <= w && Math.abs(x) <= r);
    }
  }
}

/** Coverage mask (0..1, 4× supersampled) of a shape in a size×size image. */
export function shapeMask(shape: Shape, cx: number, cy: number, r: number, size: number, ss = 4): Float32Array {
  const m = new Float32Array(size * size);
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      let c = 0;
      for (let j = 0; j < ss; j++) for (let i = 0; i < ss; i++) if (inside(shape, px + (i + 0.5) / ss - cx, py + (j + 0.5) / ss - cy, r)) c++;
      m[py * size + px] = c / (ss * ss);
    }
  }
  return m;
}

/** Renders a training-style image (for checking the classifier against ground truth). */
export function render(shape: Shape, fg: string, bg: string, cx: number, cy: number, r: number, size = 32): Uint8Array {
  const m = shapeMask(shape, cx, cy, r, size);
  const out = new Uint8Array(size * size * 3);
  const f = COLORS[fg]!;
  const b = COLORS[bg]!;
  for (let p = 0; p < size * size; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(m[p]! * f[c]! + (1 - m[p]!) * b[c]!);
  return out;
}
