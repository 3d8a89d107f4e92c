import { COLORS, COLOR_NAMES, SHAPES, shapeMask, type Shape } from "./shapes.js";

export interface Classification {
  background: string;
  foreground: string;
  shape: Shape;
  /** IoU of the best-matching ideal shape with the foreground mask. */
  iou: number;
  /** Fraction of the image that is foreground. */
  coverage: number;
}

function nearestColor(rgb: [number, number, number]): string {
  let best = COLOR_NAMES[0]!;
  let bestD = Infinity;
  for (const name of COLOR_NAMES) {
    const c = COLORS[name]!;
    const d = (c[0] - rgb[0]) ** 2 + (c[1] - rgb[1]) ** 2 + (c[2] - rgb[2]) ** 2;
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

/**
 * Deterministic pixel classifier for tiny-shapes images: background = the palette colour most border
 * pixels are nearest to; foreground = pixels far from the background; its colour = the palette colour
 * nearest the foreground's most frequent nearest colour; its shape = the ideal shape (searched over position and
 * size) with the highest IoU against the foreground mask.
 */
export function classify(data: Uint8Array, size: number): Classification {
  const px = (i: number): [number, number, number] => [data[i * 3]!, data[i * 3 + 1]!, data[i * 3 + 2]!];
  const votes = new Map<string, number>();
  const border: number[] = [];
  for (let i = 0; i < size; i++) border.push(i, (size - 1) * size + i, i * size, i * size + size - 1);
  for (const i of border) {
    const c = nearestColor(px(i));
    votes.set(c, (votes.get(c) ?? 0) + 1);
  }
  const background = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  // Foreground = pixels whose nearest palette colour is not the background's (robust for close pairs
  // like orange on yellow); its colour = the majority nearest-palette colour among them.
  const mask = new Float32Array(size * size);
  const fgVotes = new Map<string, number>();
  let sx = 0;
  let sy = 0;
  let n = 0;
  for (let i = 0; i < size * size; i++) {
    const c = nearestColor(px(i));
    if (c !== background) {
      mask[i] = 1;
      fgVotes.set(c, (fgVotes.get(c) ?? 0) + 1);
      sx += i % size;
      sy += Math.floor(i / size);
      n++;
    }
  }
  if (n === 0) return { background, foreground: background, shape: "circle", iou: 0, coverage: 0 };
  const foreground = [...fgVotes.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  const cx0 = sx / n + 0.5;
  const cy0 = sy / n + 0.5;
  let best: { shape: Shape; iou: number } = { shape: "circle", iou: -1 };
  const scale = size / 32;
  for (const shape of SHAPES) {
    for (let r = 6 * scale; r <= 15 * scale; r += 0.75 * scale) {
      for (let dy = -1; dy <= 1; dy += 1) {
        for (let dx = -1; dx <= 1; dx += 1) {
          const m = shapeMask(shape, cx0 + dx * scale * 0.75, cy0 + dy * scale * 1.25, r, size, 1);
          let inter = 0;
          let uni = 0;
          for (let i = 0; i < m.length; i++) {
            const t = m[i]! >= 0.5 ? 1 : 0;
            inter += t & mask[i]!;
            uni += t | mask[i]!;
          }
          const iou = uni ? inter / uni : 0;
          if (iou > best.iou) best = { shape, iou };
        }
      }
    }
  }
  return { background, foreground, shape: best.shape, iou: best.iou, coverage: n / (size * size) };
}
