"""Procedural dataset for tiny-shapes: a coloured shape on a differently coloured background.

Everything is generated on the fly from a seed, so training needs no download and is reproducible.
Shapes are rendered with 4x supersampling so their edges are anti-aliased like a real image.
"""
import numpy as np

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "orange": (245, 140, 20),
    "purple": (140, 40, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ["circle", "square", "triangle", "star", "cross"]
SIZE = 32
SUPERSAMPLE = 4


def shape_mask(shape, cx, cy, r, size=SIZE, ss=SUPERSAMPLE):
    """Coverage in [0,1] of `shape` centred at (cx, cy) with 'radius' r, in pixel units."""
    n = size * ss
    coords = (np.arange(n) + 0.5) / ss
    x = coords[None, :] - cx
    y = coords[:, None] - cy  # y grows downwards
    if shape == "circle":
        inside = x * x + y * y <= r * r
    elif shape == "square":
        h = r * 0.85
        inside = (np.abs(x) <= h) & (np.abs(y) <= h)
    elif shape == "triangle":
        # upward equilateral triangle inscribed in a circle of radius r*1.1, centroid at centre
        R = r * 1.15
        top = -R
        base = R * 0.5
        half_w = (base - top) / np.sqrt(3.0)
        t = (y - top) / (base - top)  # 0 at apex, 1 at base
        inside = (t >= 0) & (t <= 1) & (np.abs(x) <= t * half_w)
    elif shape == "star":
        R = r * 1.15
        rin = R * 0.42
        theta = np.arctan2(x, -y)  # 0 points up
        rho = np.sqrt(x * x + y * y)
        sector = 2 * np.pi / 5
        phi = np.abs(np.mod(theta + sector / 2, sector) - sector / 2)
        # edge from outer vertex (R, 0) to inner vertex (rin, sector/2), in polar-local coordinates
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        ax, ay = R, 0.0
        bx, by = rin * np.cos(sector / 2), rin * np.sin(sector / 2)
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        inside = cross >= 0  # the origin side of the edge from outer to inner vertex
    elif shape == "cross":
        w = r * 0.36
        inside = ((np.abs(x) <= w) & (np.abs(y) <= r)) | ((np.abs(y) <= w) & (np.abs(x) <= r))
    else:
        raise ValueError(f"unknown shape {shape}")
    return inside.reshape(size, ss, size, ss).mean(axis=(1, 3))


def render(shape, fg, bg, cx, cy, r):
    m = shape_mask(shape, cx, cy, r)[..., None]
    img = m * np.array(COLORS[fg], dtype=np.float64) + (1 - m) * np.array(COLORS[bg], dtype=np.float64)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def caption(shape, fg, bg):
    return f"a {fg} {shape} on a {bg} background"


def sample(rng, shape_p=None):
    """One image and its caption; the shape uniformly, or with the probabilities `shape_p` (in SHAPES order)."""
    shape = SHAPES[rng.integers(len(SHAPES))] if shape_p is None else SHAPES[rng.choice(len(SHAPES), p=shape_p)]
    names = list(COLORS)
    fg = names[rng.integers(len(names))]
    bg = names[rng.integers(len(names) - 1)]
    if bg == fg:
        bg = names[-1]
    cx = SIZE / 2 + rng.uniform(-2.5, 2.5)
    cy = SIZE / 2 + rng.uniform(-2.5, 2.5)
    r = rng.uniform(9.0, 12.0)
    return render(shape, fg, bg, cx, cy, r), caption(shape, fg, bg)


def batch(rng, n, shape_p=None):
    imgs, caps = zip(*(sample(rng, shape_p) for _ in range(n)))
    return np.stack(imgs), list(caps)
