"""Small raster primitives shared by the chest and limb phantoms.

Everything works in pixel coordinates on float32 "density" canvases (0 = nothing in the beam);
the phantom modules turn summed densities into a radiograph with :func:`expose`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.interpolate import splev, splprep

Point = tuple[float, float]


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """Independent generator for one (seed, stream...) key, so adding a finding never shifts others."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *stream])


def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each float32 (h, w)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x, y


def polygon_mask(shape: tuple[int, int], points: Sequence[Point]) -> np.ndarray:
    """Filled polygon as a bool (h, w) mask."""
    img = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in points], fill=1)
    return np.asarray(img, dtype=bool)


def smooth_closed(points: Sequence[Point], n: int = 200, s: float = 0.0) -> list[Point]:
    """Closed periodic spline through control points (a smooth organ outline)."""
    pts = np.asarray(points, dtype=float)
    tck, _ = splprep([pts[:, 0], pts[:, 1]], s=s, per=True, k=3)
    x, y = splev(np.linspace(0, 1, n), tck)
    return list(zip(x, y))


def smooth_open(points: Sequence[Point], n: int = 60) -> list[Point]:
    """Open spline through control points (a rib or clavicle centre line)."""
    pts = np.asarray(points, dtype=float)
    k = min(3, len(pts) - 1)
    tck, _ = splprep([pts[:, 0], pts[:, 1]], s=0, k=k)
    x, y = splev(np.linspace(0, 1, n), tck)
    return list(zip(x, y))


def stroke(shape: tuple[int, int], path: Sequence[Point], width: float, value: float = 1.0) -> np.ndarray:
    """A polyline of the given width drawn on a float32 (h, w) canvas."""
    img = Image.new("F", (shape[1], shape[0]), 0.0)
    ImageDraw.Draw(img).line([(float(x), float(y)) for x, y in path], fill=float(value),
                             width=max(1, int(round(width))), joint="curve")
    return np.asarray(img, dtype=np.float32).copy()


def tube(shape: tuple[int, int], path: Sequence[Point], width: float, cortex: float = 0.3) -> np.ndarray:
    """Projection of a hollow bony tube (rib, phalanx shaft): bright cortical rims, paler middle.

    Returns float32 (h, w) in [0, 1].
    """
    outer = stroke(shape, path, width)
    inner = stroke(shape, path, width * (1 - cortex))
    return blur(outer - 0.45 * inner, max(0.6, width * 0.12))


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (float32)."""
    if sigma <= 0:
        return a.astype(np.float32, copy=False)
    return ndimage.gaussian_filter(a.astype(np.float32, copy=False), sigma, mode="nearest")


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Band-limited noise with correlation length ``scale`` px, normalised to zero mean, unit std.

    Drawn on a coarse grid and upsampled, so it costs the same at any image size.
    """
    h, w = shape
    step = max(1.0, scale / 2.0)
    ch, cw = int(np.ceil(h / step)) + 3, int(np.ceil(w / step)) + 3
    coarse = ndimage.gaussian_filter(rng.standard_normal((ch, cw)).astype(np.float32), 1.0, mode="wrap")
    zoomed = ndimage.zoom(coarse, (h + 2 * step) / ch, order=1)[:h, :w]
    if zoomed.shape != shape:  # rounding of zoom
        zoomed = np.pad(zoomed, [(0, h - zoomed.shape[0]), (0, w - zoomed.shape[1])], mode="edge")
    z = zoomed - zoomed.mean()
    return (z / (z.std() + 1e-6)).astype(np.float32)


def ellipsoid(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
              angle: float = 0.0) -> np.ndarray:
    """Projected thickness of an ellipsoid, float32 in [0, 1] (1 at the centre, 0 outside)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    u = (c * dx + s * dy) / rx
    v = (-s * dx + c * dy) / ry
    return np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None)).astype(np.float32)


def bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x_min, y_min, x_max, y_max) in pixels of a bool mask, None if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def expose(density: np.ndarray, rng: np.random.Generator, *, k: float, gamma: float,
           noise: float, gain: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Density (attenuation) -> radiograph in [0, 1] with 0 = black (air), 1 = white (bone).

    Film-like response ``1 - exp(-k * density)``, a gamma for exposure, a faint heel-effect
    gradient and additive quantum noise. Per-pixel and content-independent, so a local change in
    density only changes pixels locally (what the finding tests rely on).
    """
    h, w = density.shape
    img = 1.0 - np.exp(-k * density)
    img = np.clip(img, 0, 1) ** gamma
    heel = 1.0 + rng.uniform(-0.06, 0.06) * np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    img = offset + gain * img * heel
    img = img + noise * rng.standard_normal((h, w)).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def add_ellipsoid(canvas: np.ndarray, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0,
                  weight: float = 1.0, mode: str = "add") -> None:
    """Add (or max) a weighted ellipsoid into ``canvas`` in place, touching only its bounding box."""
    h, w = canvas.shape
    r = max(rx, ry) + 1
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    e = weight * ellipsoid(x, y, cx, cy, rx, ry, angle)
    if mode == "max":
        np.maximum(canvas[y0:y1, x0:x1], e, out=canvas[y0:y1, x0:x1])
    else:
        canvas[y0:y1, x0:x1] += e


class Canvas:
    """A PIL float canvas for drawing many strokes cheaply (later strokes overwrite earlier ones)."""

    def __init__(self, shape: tuple[int, int]):
        self.img = Image.new("F", (shape[1], shape[0]), 0.0)
        self.draw = ImageDraw.Draw(self.img)

    def line(self, path: Sequence[Point], width: float, value: float = 1.0) -> None:
        self.draw.line([(float(x), float(y)) for x, y in path], fill=float(value),
                       width=max(1, int(round(width))), joint="curve")

    def polygon(self, points: Sequence[Point], value: float = 1.0) -> None:
        self.draw.polygon([(float(x), float(y)) for x, y in points], fill=float(value))

    def array(self) -> np.ndarray:
        return np.asarray(self.img, dtype=np.float32).copy()
