"""Synthetic frontal (PA) chest radiographs with the 14 VinBigData findings.

A phantom is built as a sum of projected "densities" (soft tissue, lungs as air, heart,
mediastinum, aorta, spine, ribs, clavicles, vessels) and exposed with a film-like curve.
Anatomy comes from one random stream per seed; each finding has its own stream, so the
same seed with and without a finding differs only where the finding is (see ``Finding.mask``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radtriage.labels import CHEST_CLASSES
from radtriage.phantoms import drawing as dr
from radtriage.phantoms.types import Finding, Phantom

# Stream ids for rng_for(seed, stream, ...).
_ANATOMY, _EXPOSURE, _FINDING = 0, 1, 2
# Finding masks are where the finding's density exceeds this fraction of its peak.
_MASK_FRACTION = 0.04


@dataclass
class _Scene:
    """Geometry and density layers of one chest (pixels)."""

    h: int
    w: int
    x: np.ndarray
    y: np.ndarray
    cx: float
    hw: float  # inner thorax half-width, px
    v_apex: float
    domes: tuple[float, float]  # dome tops (patient right = image left, left), px
    body: np.ndarray  # soft tissue thickness [0, 1]
    lung_sides: tuple[np.ndarray, np.ndarray]  # bool, image-left and image-right hemithorax
    lung_soft: np.ndarray  # blurred union of the lungs
    vessels: np.ndarray
    texture: np.ndarray
    mediastinum: np.ndarray
    heart: np.ndarray
    knob: np.ndarray
    bones: np.ndarray
    bone_mask: np.ndarray
    ribs: list[list[tuple[float, float]]]
    trachea: np.ndarray
    bubble: np.ndarray
    heart_params: dict
    ctr: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.h, self.w

    @property
    def hemithorax(self) -> np.ndarray:
        return self.lung_sides[0] | self.lung_sides[1]

    @property
    def lungs(self) -> np.ndarray:
        """Visible lung fields: hemithoraces minus heart and mediastinum shadows."""
        return self.hemithorax & (self.heart < 0.05) & (self.mediastinum < 0.3) & (self.knob < 0.05)


# ---------------------------------------------------------------- anatomy


def _lung_outline(cx: float, side: int, w: int, h: int, hw: float, v_apex: float, dome: float,
                  v_cp: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Control points of one hemithorax (side -1 = image left = patient's right)."""
    j = lambda s: 1 + rng.normal(0, s)  # noqa: E731 - tiny per-point jitter
    pts = [
        (0.055 * w, v_apex + 0.07 * h),
        (0.05 * w, 0.30 * h),
        (0.055 * w, 0.45 * h),
        (0.065 * w, dome + 0.02 * h),
        (0.09 * w, dome + 0.045 * h),
        (0.42 * hw * j(0.04), dome - 0.005 * h),
        (0.72 * hw * j(0.03), dome + 0.025 * h),
        (0.97 * hw, v_cp),
        (1.0 * hw * j(0.01), v_cp - 0.14 * h),
        (0.96 * hw * j(0.02), 0.42 * h),
        (0.82 * hw * j(0.03), 0.26 * h),
        (0.55 * hw, v_apex + 0.025 * h),
        (0.33 * hw, v_apex),
        (0.16 * hw, v_apex + 0.025 * h),
    ]
    return [(cx + side * dx, y) for dx, y in pts]


def _heart_layer(x, y, cx, hw, dome, ctr: float, tilt: float, h: int) -> tuple[np.ndarray, dict]:
    """Heart as a union of right-atrium and left-ventricle ellipsoids; width = ctr * thorax width."""
    width = ctr * 2 * hw
    r_r, r_l = 0.34 * width, 0.66 * width
    bottom = dome + 0.03 * h
    ra = dr.ellipsoid(x, y, cx - r_r * 0.45, bottom - 0.09 * h, r_r * 0.55, 0.09 * h)
    lv = dr.ellipsoid(x, y, cx + r_l * 0.42, bottom - 0.09 * h, r_l * 0.6, 0.12 * h, tilt)
    core = dr.ellipsoid(x, y, cx + 0.1 * r_l, bottom - 0.15 * h, 0.3 * width, 0.12 * h)
    heart = np.maximum(np.maximum(ra, lv), core)
    heart = heart * (y < bottom + 0.02 * h)
    return heart.astype(np.float32), {"ctr": ctr, "tilt": tilt}


def _knob_layer(x, y, cx, w, h, v_knob: float, r: float) -> np.ndarray:
    return dr.ellipsoid(x, y, cx + 0.055 * w + 0.5 * r, v_knob, r, r * 1.05)


def _vessel_tree(canvas: dr.Canvas, rng, start, direction: float, length: float, width: float,
                 depth: int) -> None:
    """Recursive branching lung markings drawn onto ``canvas``."""
    x0, y0 = start
    x1, y1 = x0 + length * np.cos(direction), y0 + length * np.sin(direction)
    canvas.line([(x0, y0), (x1, y1)], width, value=min(1.0, 0.35 + 0.25 * width))
    if depth == 0:
        return
    for turn in (-1, 1):
        _vessel_tree(canvas, rng, (x1, y1), direction + turn * rng.uniform(0.25, 0.55),
                     length * rng.uniform(0.68, 0.85), max(1.0, width * 0.72), depth - 1)


def _build_scene(seed: int, h: int, w: int) -> _Scene:
    rng = dr.rng_for(seed, _ANATOMY)
    x, y = dr.grid(h, w)
    cx = w * (0.5 + rng.normal(0, 0.012))
    hw = w * rng.uniform(0.34, 0.40)
    v_apex = h * rng.uniform(0.08, 0.12)
    v_cp_r = h * rng.uniform(0.72, 0.80)
    v_cp_l = v_cp_r + h * rng.uniform(0.0, 0.03)
    dome_r = v_cp_r - h * rng.uniform(0.08, 0.12)
    dome_l = dome_r + h * rng.uniform(0.01, 0.04)

    # Body: neck, shoulders, chest wall; thickness falls off towards the skin.
    hwb = hw + w * rng.uniform(0.05, 0.09)
    shoulder = np.clip((y - 0.0 * h) / (0.14 * h), 0, 1)
    half = 0.12 * w + (hwb - 0.12 * w) * np.sqrt(shoulder)
    body = np.sqrt(np.clip(1 - ((x - cx) / half) ** 2, 0, None)) ** 0.6
    body = dr.blur(body, 1.0)

    sides = []
    for side, dome, v_cp in ((-1, dome_r, v_cp_r), (1, dome_l, v_cp_l)):
        pts = _lung_outline(cx, side, w, h, hw, v_apex, dome, v_cp, rng)
        sides.append(dr.polygon_mask((h, w), dr.smooth_closed(pts, n=240)))
    lung_union = (sides[0] | sides[1]).astype(np.float32)
    lung_soft = dr.blur(lung_union, 0.006 * h)
    # Lungs are thicker (more air) in the middle of each hemithorax.
    depth = dr.blur(ndimage.distance_transform_edt(lung_union).astype(np.float32), 0.01 * h)
    lung_soft = lung_soft * (0.75 + 0.25 * np.clip(depth / (0.06 * h), 0, 1))

    # Heart, mediastinum, aorta, trachea.
    ctr = rng.uniform(0.39, 0.46)
    tilt = rng.uniform(-0.45, -0.2)
    heart, hp = _heart_layer(x, y, cx, hw, dome_r, ctr, tilt, h)
    hp.update(dome=dome_r)
    med_half = w * (0.045 + 0.02 * np.clip(y / h - 0.2, 0, 1))
    mediastinum = dr.blur(((np.abs(x - (cx + 0.006 * w)) < med_half) & (y < dome_r)).astype(np.float32),
                          0.008 * h)
    v_knob = h * rng.uniform(0.27, 0.31)
    knob_r = w * rng.uniform(0.025, 0.032)
    hp.update(v_knob=v_knob, knob_r=knob_r)
    knob = _knob_layer(x, y, cx, w, h, v_knob, knob_r)
    hila = sum(dr.ellipsoid(x, y, cx + s * 0.085 * w, 0.43 * h, 0.03 * w, 0.05 * h) for s in (-1, 1))
    mediastinum = np.maximum(mediastinum, 0.6 * hila)
    trachea = dr.blur(((np.abs(x - cx + 0.004 * w) < 0.016 * w) & (y < 0.34 * h)).astype(np.float32),
                      0.004 * h)
    bubble = dr.ellipsoid(x, y, cx + 0.55 * hw, dome_l + 0.05 * h, 0.06 * w, 0.025 * h) * rng.uniform(0.2, 1)

    # Bones: spine, posterior and anterior ribs, clavicles, humeral heads.
    spine = np.zeros((h, w), np.float32)
    step = h * rng.uniform(0.05, 0.058)
    for v0 in np.arange(-step * rng.uniform(0, 1), h, step):
        dr.add_ellipsoid(spine, cx, v0 + 0.4 * step, 0.036 * w, 0.42 * step, weight=0.7)
        for s in (-1, 1):
            dr.add_ellipsoid(spine, cx + s * 0.026 * w, v0 + 0.35 * step, 0.008 * w, 0.013 * h, weight=0.5)
    rib_sp = (v_cp_r - v_apex) / rng.uniform(9.0, 10.0)
    ribs_paths = []
    post_o, post_i, ant_o, ant_i = (dr.Canvas((h, w)) for _ in range(4))
    for k in range(11):
        v0 = v_apex - 0.03 * h + k * rib_sp
        rw = h * (0.016 + 0.0009 * k)
        for s in (-1, 1):
            ext = hw * 1.03
            post = [(cx + s * 0.03 * w, v0), (cx + s * 0.3 * ext, v0 - 0.02 * h),
                    (cx + s * 0.7 * ext, v0 + 0.01 * h), (cx + s * ext, v0 + 0.075 * h),
                    (cx + s * 1.02 * ext, v0 + 0.12 * h)]
            path = dr.smooth_open(post, n=30)
            ribs_paths.append(path)
            post_o.line(path, rw)
            post_i.line(path, rw * 0.7)
            ant = dr.smooth_open([(cx + s * ext * 0.99, v0 + 0.11 * h), (cx + s * 0.7 * ext, v0 + 0.15 * h),
                                  (cx + s * 0.38 * ext, v0 + 0.21 * h)], n=20)
            ant_o.line(ant, rw * 0.9)
            ant_i.line(ant, rw * 0.6)
    cla_o, cla_i = dr.Canvas((h, w)), dr.Canvas((h, w))
    for s in (-1, 1):
        cl = dr.smooth_open([(cx + s * 0.025 * w, v_apex + 0.085 * h), (cx + s * 0.14 * w, v_apex + 0.055 * h),
                             (cx + s * 0.26 * w, v_apex + 0.01 * h), (cx + s * (hw + 0.03 * w), v_apex - 0.03 * h)],
                            n=30)
        cla_o.line(cl, 0.028 * h)
        cla_i.line(cl, 0.016 * h)
        dr.add_ellipsoid(spine, cx + s * (hwb + 0.015 * w), 0.09 * h, 0.07 * w, 0.075 * h, weight=0.6)
    sig = 0.0025 * h
    bones = (spine + dr.blur(0.6 * (post_o.array() - 0.45 * post_i.array())
                             + 0.22 * (ant_o.array() - 0.45 * ant_i.array())
                             + 0.8 * (cla_o.array() - 0.4 * cla_i.array()), sig))
    bones *= body > 0.05
    bone_mask = bones > 0.08

    # Lung markings from each hilum, fading to the periphery.
    vessels = np.zeros((h, w), np.float32)
    for s, side in ((-1, sides[0]), (1, sides[1])):
        canvas = dr.Canvas((h, w))
        for off in np.linspace(-1.3, 1.4, 6) + rng.normal(0, 0.1, 6):
            d = (np.pi if s < 0 else 0.0) - s * off  # off > 0 points up, < 0 down
            _vessel_tree(canvas, rng, (cx + s * 0.08 * w, 0.43 * h + rng.normal(0, 0.01 * h)),
                         d, 0.07 * h, 0.008 * h, 4)
        vessels += canvas.array() * side
    periphery = np.clip(1.15 - np.hypot((x - cx) / hw, (y - 0.43 * h) / (0.5 * h)), 0.15, 1)
    vessels = dr.blur(np.clip(vessels, 0, 1.2) * periphery, 0.0015 * h + 0.4)
    texture = dr.smooth_noise(rng, (h, w), 0.015 * h) * lung_union

    meas = _measure_ctr(heart, sides)
    return _Scene(h, w, x, y, cx, hw, v_apex, (dome_r, dome_l), body, tuple(sides), lung_soft, vessels,
                  texture, mediastinum, heart, knob, bones, bone_mask, ribs_paths, trachea, bubble, hp, meas)


def _measure_ctr(heart: np.ndarray, sides: Sequence[np.ndarray]) -> float:
    """Cardiothoracic ratio: widest heart diameter over widest inner thorax diameter."""
    hx = np.nonzero((heart > 0.05).any(axis=0))[0]
    tx = np.nonzero((sides[0] | sides[1]).any(axis=0))[0]
    return float((hx.max() - hx.min()) / (tx.max() - tx.min())) if len(hx) and len(tx) else 0.0


# ---------------------------------------------------------------- findings
# Each returns (added density (H,W) float32, or None for a structural change, mask). Structural
# findings edit the scene in place instead.


def _pick_in(mask: np.ndarray, rng: np.random.Generator, margin: float = 0.0) -> tuple[float, float]:
    """A random pixel of ``mask`` (eroded by ``margin`` px when that leaves something)."""
    m = ndimage.binary_erosion(mask, iterations=int(margin)) if margin >= 1 else mask
    if not m.any():
        m = mask
    ys, xs = np.nonzero(m)
    i = rng.integers(len(xs))
    return float(xs[i]), float(ys[i])


def _side(sc: _Scene, rng: np.random.Generator) -> int:
    return int(rng.integers(2))


def _cardiomegaly(sc: _Scene, rng, sev: float):
    ctr = 0.56 + 0.1 * sev + rng.uniform(0, 0.02)
    sc.heart, _ = _heart_layer(sc.x, sc.y, sc.cx, sc.hw, sc.heart_params["dome"], ctr,
                               sc.heart_params["tilt"], sc.h)
    sc.ctr = _measure_ctr(sc.heart, sc.lung_sides)
    return None, sc.heart > 0.02


def _aortic_enlargement(sc: _Scene, rng, sev: float):
    r = sc.heart_params["knob_r"] * (1.5 + 0.7 * sev)
    sc.knob = np.maximum(sc.knob, _knob_layer(sc.x, sc.y, sc.cx, sc.w, sc.h, sc.heart_params["v_knob"], r))
    return None, sc.knob > 0.02


def _pleural_effusion(sc: _Scene, rng, sev: float):
    s = _side(sc, rng)
    side = sc.lung_sides[s]
    xs = np.nonzero(side.any(axis=0))[0]
    lateral = xs.min() if s == 0 else xs.max()
    frac = np.abs(sc.x - lateral) / max(1.0, xs.max() - xs.min())  # 0 at the chest wall
    dome = sc.domes[s]
    level = dome - sc.h * (0.03 + 0.16 * sev) * rng.uniform(0.8, 1.1)
    meniscus = level - sc.h * 0.06 * (1 - frac) ** 2  # fluid climbs the lateral wall
    depth = np.clip((sc.y - meniscus) / (0.05 * sc.h), 0, 1)
    dens = (0.5 + 0.3 * sev) * depth * side
    dens = dr.blur(dens, 0.004 * sc.h) * side
    return dens, dens > _MASK_FRACTION * dens.max()


def _pneumothorax(sc: _Scene, rng, sev: float):
    s = _side(sc, rng)
    side = sc.lung_sides[s]
    # Collapsed lung: the hemithorax shrunk towards the hilum; the rim outside it is pleural air.
    scale = 1 - (0.12 + 0.25 * sev)
    hx, hy = sc.cx + (-1 if s == 0 else 1) * 0.07 * sc.w, 0.45 * sc.h
    coords = [(sc.y - hy) / scale + hy, (sc.x - hx) / scale + hx]
    lung = ndimage.map_coordinates(side.astype(np.float32), coords, order=1) > 0.5
    lung &= side
    rim = side & ~lung
    line = lung & ~ndimage.binary_erosion(lung, iterations=max(1, int(0.003 * sc.h)))
    line &= ndimage.binary_dilation(rim, iterations=2)
    sc.vessels = sc.vessels * ~rim
    sc.texture = sc.texture * ~rim
    dens = -0.12 * dr.blur(rim.astype(np.float32), 1.0) * side + 0.25 * dr.blur(line.astype(np.float32), 0.6)
    mask = (rim | line) & side
    return dens.astype(np.float32), mask


def _round_lesion(sc: _Scene, rng, radius: float, strength: float, lobulated: float):
    cx, cy = _pick_in(sc.lungs, rng, margin=radius)
    d = dr.ellipsoid(sc.x, sc.y, cx, cy, radius, radius * rng.uniform(0.85, 1.15), rng.uniform(0, np.pi))
    if lobulated:
        d = d * (1 + lobulated * dr.smooth_noise(rng, sc.shape, radius * 0.5))
    dens = strength * np.clip(d, 0, None) * sc.hemithorax
    return dens.astype(np.float32), dens > _MASK_FRACTION * dens.max()


def _nodule_mass(sc: _Scene, rng, sev: float):
    mass = rng.random() < 0.35
    radius = sc.h * ((0.035 + 0.035 * sev) if mass else (0.012 + 0.016 * sev))
    return _round_lesion(sc, rng, radius, 0.25 + 0.35 * sev, 0.25 if mass else 0.0)


def _zone(sc: _Scene, rng, lower: bool | None = None) -> np.ndarray:
    """One side's upper, middle or lower zone as a soft float mask."""
    side = sc.lung_sides[_side(sc, rng)]
    ys = np.nonzero(side.any(axis=1))[0]
    top, bot = ys.min(), ys.max()
    z = rng.uniform(0.55, 0.85) if lower else (rng.uniform(0.15, 0.85) if lower is None else rng.uniform(0.1, 0.4))
    cy = top + z * (bot - top)
    band = np.exp(-(((sc.y - cy) / (0.12 * sc.h)) ** 2))
    return band * (sc.lungs & side)


def _blob(sc: _Scene, rng, sev: float, scale: float, thresh: float) -> np.ndarray:
    zone = _zone(sc, rng)
    n = dr.smooth_noise(rng, sc.shape, scale * sc.h)
    return np.clip(n * zone - thresh + 0.6 * sev * zone, 0, None)


def _consolidation(sc: _Scene, rng, sev: float):
    blob = dr.blur((_blob(sc, rng, sev, 0.06, 0.25) > 0.05).astype(np.float32), 0.006 * sc.h)
    canvas = dr.Canvas(sc.shape)
    ys, xs = np.nonzero(blob > 0.5)
    if len(xs):  # air bronchograms
        i = rng.integers(len(xs))
        _vessel_tree(canvas, rng, (xs[i], ys[i]), rng.uniform(0, 2 * np.pi), 0.04 * sc.h, 0.005 * sc.h, 2)
    bronchi = canvas.array()
    dens = (0.35 + 0.35 * sev) * blob * (1 - 0.5 * np.clip(bronchi, 0, 1)) * sc.hemithorax
    return dens.astype(np.float32), dens > _MASK_FRACTION * max(dens.max(), 1e-6)


def _lung_opacity(sc: _Scene, rng, sev: float):
    blob = dr.blur(_blob(sc, rng, sev, 0.08, 0.15), 0.02 * sc.h)
    dens = (0.15 + 0.25 * sev) * blob / max(blob.max(), 1e-6) * sc.hemithorax
    return dens.astype(np.float32), dens > _MASK_FRACTION * max(dens.max(), 1e-6)


def _infiltration(sc: _Scene, rng, sev: float):
    zone = _zone(sc, rng)
    patches = np.clip(dr.smooth_noise(rng, sc.shape, 0.012 * sc.h) - 0.6, 0, None) * zone
    dens = dr.blur((0.3 + 0.3 * sev) * patches / max(patches.max(), 1e-6), 0.003 * sc.h) * sc.hemithorax
    return dens.astype(np.float32), dens > _MASK_FRACTION * max(dens.max(), 1e-6)


def _atelectasis(sc: _Scene, rng, sev: float):
    side = sc.lung_sides[_side(sc, rng)] & sc.lungs
    ys = np.nonzero(side.any(axis=1))[0]
    cy = ys.min() + rng.uniform(0.55, 0.8) * (ys.max() - ys.min())
    xs = np.nonzero(side[int(cy)])[0] if side[int(cy)].any() else np.nonzero(side.any(axis=0))[0]
    x0, x1 = xs.min(), xs.max()
    a, b = x0 + 0.15 * (x1 - x0), x1 - 0.15 * (x1 - x0)
    tilt = rng.uniform(-0.05, 0.05) * sc.h
    band = dr.stroke(sc.shape, [(a, cy - tilt), ((a + b) / 2, cy + rng.normal(0, 0.01 * sc.h)), (b, cy + tilt)],
                     (0.01 + 0.025 * sev) * sc.h)
    dens = (0.3 + 0.3 * sev) * dr.blur(band, 0.004 * sc.h) * sc.hemithorax
    return dens.astype(np.float32), dens > _MASK_FRACTION * max(dens.max(), 1e-6)


def _reticular(sc: _Scene, rng, sev: float, scale: float, envelope: np.ndarray):
    n = dr.smooth_noise(rng, sc.shape, scale * sc.h)
    net = np.exp(-((n / 0.18) ** 2))  # zero crossings of band-limited noise form a net
    dens = (0.18 + 0.25 * sev) * net * envelope
    dens = dr.blur(dens, 0.6) * sc.hemithorax
    return dens.astype(np.float32), envelope > 0.15


def _ild(sc: _Scene, rng, sev: float):
    ys = np.nonzero(sc.lungs.any(axis=1))[0]
    top, bot = ys.min(), ys.max()
    mid = np.clip(1.3 - np.abs((sc.y - (top + 0.6 * (bot - top))) / (0.35 * (bot - top))), 0, 1)
    return _reticular(sc, rng, sev, 0.012, mid * sc.lungs)


def _fibrosis(sc: _Scene, rng, sev: float):
    ys = np.nonzero(sc.lungs.any(axis=1))[0]
    top, bot = ys.min(), ys.max()
    lower = np.clip((sc.y - (top + 0.45 * (bot - top))) / (0.3 * (bot - top)), 0, 1)
    peripheral = np.clip(np.abs(sc.x - sc.cx) / sc.hw * 1.6 - 0.4, 0, 1)
    side = sc.lung_sides[_side(sc, rng)] if rng.random() < 0.4 else sc.hemithorax
    return _reticular(sc, rng, sev * 1.2, 0.022, lower * peripheral * (sc.lungs & side))


def _pleural_thickening(sc: _Scene, rng, sev: float):
    side = sc.lung_sides[_side(sc, rng)]
    dist = ndimage.distance_transform_edt(side).astype(np.float32)
    thick = (0.012 + 0.012 * sev) * sc.h
    ys = np.nonzero(side.any(axis=1))[0]
    if rng.random() < 0.5:  # apical cap
        region = sc.y < ys.min() + 0.18 * (ys.max() - ys.min())
    else:  # lateral chest wall
        cy = ys.min() + rng.uniform(0.3, 0.75) * (ys.max() - ys.min())
        region = (np.abs(sc.y - cy) < 0.1 * sc.h) & (np.abs(sc.x - sc.cx) > 0.6 * sc.hw)
    dens = (0.3 + 0.25 * sev) * np.clip(1.3 - dist / thick, 0, 1) * region * side
    dens = dr.blur(dens.astype(np.float32), 0.8) * side
    return dens, dens > _MASK_FRACTION * max(dens.max(), 1e-6)


def _calcification(sc: _Scene, rng, sev: float):
    dens = np.zeros(sc.shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = _pick_in(sc.lungs, rng, margin=4)
        r = max(1.5, sc.h * (0.004 + 0.006 * sev) * rng.uniform(0.8, 1.2))
        dr.add_ellipsoid(dens, cx, cy, r, r, weight=0.8 + 0.6 * sev)
    dens *= sc.hemithorax
    return dens, dens > _MASK_FRACTION * dens.max()


def _other_lesion(sc: _Scene, rng, sev: float):
    # An expansile sclerotic lesion of a rib, within the lung field.
    cand = sc.bone_mask & sc.lungs & (np.abs(sc.x - sc.cx) > 0.35 * sc.hw)
    cx, cy = _pick_in(cand if cand.any() else sc.bone_mask, rng)
    r = sc.h * (0.012 + 0.012 * sev)
    lesion = dr.ellipsoid(sc.x, sc.y, cx, cy, r * 1.6, r, rng.uniform(-0.3, 0.3))
    lesion *= 1 + 0.3 * dr.smooth_noise(rng, sc.shape, r * 0.4)
    dens = (0.35 + 0.3 * sev) * np.clip(lesion, 0, None) * sc.hemithorax
    return dens.astype(np.float32), dens > _MASK_FRACTION * dens.max()


FINDING_RENDERERS: dict[str, Callable] = {
    "Aortic enlargement": _aortic_enlargement,
    "Atelectasis": _atelectasis,
    "Calcification": _calcification,
    "Cardiomegaly": _cardiomegaly,
    "Consolidation": _consolidation,
    "ILD": _ild,
    "Infiltration": _infiltration,
    "Lung Opacity": _lung_opacity,
    "Nodule/Mass": _nodule_mass,
    "Other lesion": _other_lesion,
    "Pleural effusion": _pleural_effusion,
    "Pleural thickening": _pleural_thickening,
    "Pneumothorax": _pneumothorax,
    "Pulmonary fibrosis": _fibrosis,
}
assert tuple(sorted(FINDING_RENDERERS)) == tuple(sorted(CHEST_CLASSES))

#: Anatomy mask (key of ``Phantom.anatomy``) that each finding's mask lies within.
FINDING_ANATOMY: dict[str, str] = {name: "hemithorax" for name in CHEST_CLASSES} | {
    "Cardiomegaly": "thorax",
    "Aortic enlargement": "mediastinum",
    "Other lesion": "bone",
}


# ---------------------------------------------------------------- composition


def _compose(sc: _Scene, extra: np.ndarray) -> np.ndarray:
    lungs = sc.lung_soft * (1 - 0.9 * np.clip(sc.heart * 1.6, 0, 1))
    d = (1.0 * sc.body - 0.72 * lungs * sc.body
         + 0.55 * sc.mediastinum + 0.45 * sc.heart + 0.55 * sc.knob
         - 0.2 * sc.trachea - 0.3 * sc.bubble
         + (0.13 * sc.vessels + 0.025 * sc.texture) * sc.lung_soft
         + 0.32 * sc.bones + extra)
    return np.clip(d, 0, None) * (sc.body > 0.02)


def render_chest(seed: int, size: int = 512, findings: Sequence[str] = (), *, width: int | None = None,
                 severity: float | Sequence[float] | None = None) -> Phantom:
    """Render one synthetic PA chest radiograph.

    Args:
        seed: any int; same seed (and arguments) -> identical pixels.
        size: image height in pixels (>= 64).
        findings: VinBigData class names to insert (any subset of ``CHEST_CLASSES``).
        width: image width in pixels (default ``size``: square).
        severity: in [0, 1] per finding (or one value for all); None draws it from the seed.

    Returns:
        Phantom with image float32 (size, width) in [0, 1], one Finding (mask + box) per name,
        anatomy masks ("body", "hemithorax", "lungs", "heart", "mediastinum", "thorax", "bone") and
        info {"seed", "ctr" (measured cardiothoracic ratio), "view": "PA"}.
    """
    h, w = int(size), int(width or size)
    if h < 64 or w < 64:
        raise ValueError(f"chest phantoms need at least 64 px per side, got {h}x{w}")
    unknown = [f for f in findings if f not in FINDING_RENDERERS]
    if unknown:
        raise ValueError(f"unknown chest findings {unknown}; known: {', '.join(CHEST_CLASSES)}")
    sc = _build_scene(seed, h, w)
    anatomy = {
        "body": sc.body > 0.02,
        "hemithorax": ndimage.binary_dilation(sc.hemithorax, iterations=2),
        "lungs": sc.lungs,
        "heart": sc.heart > 0.02,
        "mediastinum": ndimage.binary_dilation((sc.mediastinum > 0.05) | (sc.knob > 0) | (sc.heart > 0),
                                               iterations=int(0.02 * h) + 1),
        "bone": ndimage.binary_dilation(sc.bone_mask, iterations=int(0.03 * h) + 1),
    }
    anatomy["thorax"] = anatomy["body"] & (sc.y > sc.v_apex - 0.05 * h) & (sc.y < max(sc.domes) + 0.1 * h)
    extra = np.zeros((h, w), np.float32)
    out: list[Finding] = []
    order = sorted(set(findings), key=CHEST_CLASSES.index)
    sev_of = _severities(order, severity, seed)
    for name in order:
        rng = dr.rng_for(seed, _FINDING, CHEST_CLASSES.index(name))
        dens, mask = FINDING_RENDERERS[name](sc, rng, sev_of[name])
        if dens is not None:
            extra += dens
        mask = mask & anatomy[FINDING_ANATOMY[name]]
        box = dr.bbox(mask) or (0.0, 0.0, 1.0, 1.0)
        out.append(Finding(name, mask, box, sev_of[name]))
    density = _compose(sc, extra)
    erng = dr.rng_for(seed, _EXPOSURE)
    img = dr.expose(density, erng, k=erng.uniform(1.15, 1.5), gamma=erng.uniform(0.9, 1.3),
                    noise=erng.uniform(0.006, 0.02) * (512 / max(h, 256)) ** 0.5,
                    gain=erng.uniform(0.9, 1.02), offset=erng.uniform(0.0, 0.05))
    return Phantom(img, out, anatomy, {"seed": int(seed), "ctr": round(sc.ctr, 3), "view": "PA",
                                       "anatomy": "chest"})


def _severities(order: Sequence[str], severity, seed: int) -> dict[str, float]:
    if severity is None:
        rng = dr.rng_for(seed, _FINDING, 99)
        vals = {n: float(rng.uniform(0.2, 1.0)) for n in CHEST_CLASSES}
        return {n: vals[n] for n in order}
    if np.isscalar(severity):
        return {n: float(severity) for n in order}
    return {n: float(s) for n, s in zip(order, severity, strict=True)}
