"""Synthetic upper-limb radiographs for the 7 MURA study types, normal or abnormal.

A limb is a set of bones (hollow tubes with flared, rounded ends) in a soft-tissue envelope,
laid out per study type in canonical coordinates (units of image height) and posed per view
(PA/AP, lateral, oblique). Abnormalities are those MURA contains: fracture (lucent line with a
cortical step-off), orthopaedic hardware (plate and screws), lytic lesion, joint degeneration
(osteophytes, subchondral sclerosis, narrowed joint). The abnormality sits at the same place in
the limb in every view of a study. Masks are where the abnormality changes the density.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from radtriage.labels import MURA_STUDY_TYPES
from radtriage.phantoms import drawing as dr
from radtriage.phantoms.types import Finding, Phantom

LIMB_ABNORMALITIES: tuple[str, ...] = ("fracture", "hardware", "lytic lesion", "degeneration")
VIEWS: tuple[str, ...] = ("AP", "LAT", "OBL")
#: Image width / height of each study type (MURA images are mostly portrait).
ASPECT: dict[str, float] = {"XR_ELBOW": 0.85, "XR_FINGER": 0.45, "XR_FOREARM": 0.6, "XR_HAND": 0.75,
                            "XR_HUMERUS": 0.7, "XR_SHOULDER": 1.0, "XR_WRIST": 0.6}
_ANATOMY, _VIEW, _ABNORMAL, _EXPOSURE = 0, 1, 2, 3
_METAL = 2.6
# Abnormalities are placed at least this far (canonical units) inside the image frame, so pose
# jitter (scale, shift, rotation) never moves one out of the picture: an abnormal label needs a
# visible abnormality.
_FRAME_MARGIN = 0.08
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class Bone:
    """A bone in canonical units (fractions of image height; x measured from the centre line).

    p0, p1: end points; w0, w1: half-widths of the ends; ws: half-width of the shaft.
    """

    p0: tuple[float, float]
    p1: tuple[float, float]
    w0: float
    ws: float
    w1: float
    long: bool = True  # a long bone (fracture / plate candidate)


def _ray(base: tuple[float, float], angle: float, lengths: Sequence[float], widths: Sequence[float],
         gap: float = 0.012) -> list[Bone]:
    """A chain of bones (a finger ray) from ``base`` towards ``angle`` (radians, 0 = up)."""
    out, (x, y) = [], base
    dx, dy = np.sin(angle), -np.cos(angle)
    for length, width in zip(lengths, widths):
        end = (x + dx * length, y + dy * length)
        out.append(Bone((x, y), end, width * 1.35, width * 0.8, width * 1.2))
        x, y = end[0] + dx * gap, end[1] + dy * gap
    return out


def _hand(cx: float, cy: float, s: float, fingers: bool = True) -> list[Bone]:
    """PA hand and distal forearm in hand units (width across the knuckles ~ 1) scaled by ``s``.

    (cx, cy) is the centre of the carpus; fingers point up.
    """
    def at(px: float, py: float) -> tuple[float, float]:
        return cx + s * px, cy + s * py

    carp = [(-0.26, 0.08), (-0.09, 0.1), (0.07, 0.1), (0.22, 0.07),
            (-0.27, -0.1), (-0.1, -0.11), (0.06, -0.11), (0.2, -0.09)]
    bones = [Bone(at(px - 0.02, py), at(px + 0.02, py), 0.085 * s, 0.08 * s, 0.085 * s, long=False)
             for px, py in carp]
    bones += [Bone(at(-0.17, 0.24), at(-0.2, 1.6), 0.22 * s, 0.1 * s, 0.12 * s),
              Bone(at(0.21, 0.24), at(0.25, 1.6), 0.09 * s, 0.065 * s, 0.08 * s)]
    lengths = [(0.75, 0.48, 0.3, 0.22), (0.72, 0.5, 0.33, 0.23), (0.68, 0.46, 0.3, 0.22), (0.62, 0.38, 0.24, 0.2)]
    for i, (px, ang) in enumerate(zip((-0.22, -0.07, 0.08, 0.22), (-0.1, -0.03, 0.04, 0.12))):
        segs = lengths[i] if fingers else lengths[i][:1]
        bones += _ray(at(px, -0.22), ang, [s * v for v in segs],
                      [s * v for v in (0.07, 0.06, 0.05, 0.042)][: len(segs)], gap=0.05 * s)
    thumb = (0.5, 0.38, 0.28) if fingers else (0.5,)
    bones += _ray(at(-0.36, -0.05), -0.75, [s * v for v in thumb], [s * v for v in (0.08, 0.065, 0.05)][: len(thumb)],
                  gap=0.05 * s)
    return bones


def _layout(study: str, rng: np.random.Generator) -> list[Bone]:
    """Canonical bones of one study type (AP/PA), with per-patient size jitter."""
    j = lambda: rng.uniform(0.92, 1.08)  # noqa: E731
    if study == "XR_HAND":
        return _hand(0.0, 0.74, 0.36 * j())
    if study == "XR_FINGER":
        return _ray((0.0, 1.05), rng.uniform(-0.05, 0.05), [0.3, 0.32, 0.22, 0.15],
                    [0.07 * j(), 0.055, 0.045, 0.038], gap=0.035) + \
            _ray((-0.22, 1.1), -0.12, [0.3, 0.3, 0.2], [0.06, 0.05, 0.04], gap=0.035)
    if study == "XR_WRIST":
        return _hand(0.0, 0.45, 0.62 * j(), fingers=False)
    if study == "XR_FOREARM":
        return [Bone((-0.07, 0.08), (-0.1, 0.92), 0.045, 0.027 * j(), 0.075),
                Bone((0.08, 0.04), (0.09, 0.9), 0.06, 0.025 * j(), 0.03),
                Bone((0.0, -0.3), (0.0, 0.02), 0.05, 0.05, 0.12, long=False)] + _hand(-0.01, 1.02, 0.3)[:8]
    if study == "XR_HUMERUS":
        return [Bone((0.0, 0.1), (0.02, 0.88), 0.1 * j(), 0.04 * j(), 0.1),
                Bone((-0.15, -0.1), (-0.12, 0.12), 0.06, 0.05, 0.09, long=False),
                Bone((-0.04, 0.93), (-0.07, 1.3), 0.04, 0.03, 0.04), Bone((0.07, 0.92), (0.09, 1.3), 0.05, 0.028, 0.04)]
    if study == "XR_ELBOW":
        return [Bone((0.0, -0.3), (0.0, 0.45), 0.05, 0.055 * j(), 0.16),
                Bone((-0.08, 0.52), (-0.1, 1.3), 0.06, 0.04 * j(), 0.05),
                Bone((0.07, 0.43), (0.09, 1.3), 0.075, 0.04 * j(), 0.05)]
    if study == "XR_SHOULDER":
        return [Bone((0.12, 0.45), (0.16, 1.3), 0.17 * j(), 0.075, 0.08),
                Bone((-0.5, 0.16), (0.2, 0.15), 0.04, 0.03, 0.05),  # clavicle
                Bone((-0.08, 0.38), (-0.35, 0.95), 0.13, 0.1, 0.05, long=False),  # scapula body
                Bone((0.0, 0.22), (0.25, 0.2), 0.04, 0.035, 0.04, long=False)]  # acromion
    raise ValueError(f"unknown study type {study!r}; known: {', '.join(MURA_STUDY_TYPES)}")


def _pose(bones: list[Bone], view: str, rng: np.random.Generator, h: int, w: int,
          study: str) -> list[Bone]:
    """Canonical -> pixel coordinates for one view (lateral views superimpose the bones)."""
    squeeze = {"AP": 1.0, "LAT": 0.35, "OBL": 0.65}[view]
    if study in ("XR_SHOULDER", "XR_HUMERUS"):
        squeeze = 1 - 0.5 * (1 - squeeze)
    ang = rng.uniform(-0.2, 0.2)
    sc = h * rng.uniform(0.88, 1.02)
    tx, ty = w / 2 + rng.normal(0, 0.03 * w), h * rng.normal(0, 0.03)
    c, s = np.cos(ang), np.sin(ang)
    flex = study == "XR_ELBOW" and view == "LAT"

    def tf(p):
        x, y = p[0] * squeeze, p[1]
        if flex and y > 0.47:  # lateral elbow: forearm flexed ~80 degrees at the joint
            x, y = x + (y - 0.47) * 0.98, 0.47 + (y - 0.47) * 0.2
        return (tx + sc * (c * x - s * (y - 0.5)), ty + sc * (s * x + c * (y - 0.5) + 0.5))

    return [replace(b, p0=tf(b.p0), p1=tf(b.p1), w0=b.w0 * sc, ws=b.ws * sc, w1=b.w1 * sc) for b in bones]


@dataclass(frozen=True)
class _Lesion:
    kind: str
    bone: int
    t: float  # position along the bone, 0..1
    d: float  # offset across, in shaft half-widths
    size: float  # in shaft half-widths
    angle: float
    strength: float


def _bone_density(b: Bone, shape: tuple[int, int], lesion: _Lesion | None = None
                  ) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Projected density of one bone inside its bounding box; returns (density, box slices)."""
    h, w = shape
    r = max(b.w0, b.w1, b.ws) * 1.6 + 3
    x0, x1 = int(max(0, min(b.p0[0], b.p1[0]) - r)), int(min(w, max(b.p0[0], b.p1[0]) + r + 1))
    y0, y1 = int(max(0, min(b.p0[1], b.p1[1]) - r)), int(min(h, max(b.p0[1], b.p1[1]) + r + 1))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), (slice(0, 0), slice(0, 0))
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ax, ay = b.p1[0] - b.p0[0], b.p1[1] - b.p0[1]
    length = max(1.0, float(np.hypot(ax, ay)))
    ux, uy = ax / length, ay / length
    t = ((x - b.p0[0]) * ux + (y - b.p0[1]) * uy) / length
    d = (-(x - b.p0[0]) * uy + (y - b.p0[1]) * ux)
    if lesion is not None and lesion.kind == "fracture":
        # Cortical step-off distal to an oblique line, fading over ~3 shaft widths.
        line_t = lesion.t + np.tan(lesion.angle) * d / length
        distal = t > line_t
        d = d - distal * lesion.d * b.ws * np.exp(-(((t - line_t) * length) / (3 * b.ws)) ** 2)
    tc = np.clip(t, 0, 1)
    end0, end1 = np.clip(1 - tc / 0.16, 0, 1) ** 2, np.clip((tc - 0.84) / 0.16, 0, 1) ** 2
    rad = b.ws + (b.w0 - b.ws) * end0 + (b.w1 - b.ws) * end1
    # Rounded ends: beyond t in [0, 1] the bone closes like an ellipsoid cap.
    over = np.maximum(-t, t - 1) * length
    cap = np.clip(1 - (np.maximum(over, 0) / (0.9 * rad)) ** 2, 0, 1)
    outer = np.sqrt(np.clip(rad * rad * cap - d * d, 0, None))
    cav = 0.62 * rad * (1 - 0.6 * (end0 + end1))
    inner = np.sqrt(np.clip(cav * cav * cap - d * d, 0, None))
    dens = (outer - 0.75 * inner) / max(b.ws, 1.0) * 0.55
    if lesion is not None:
        if lesion.kind == "fracture":
            gap = 0.2 * b.ws + 0.8
            dens = dens * (1 - lesion.strength * np.exp(-(((t - line_t) * length) / gap) ** 2))
        elif lesion.kind == "lytic lesion":
            e = dr.ellipsoid(t * length, d, lesion.t * length, lesion.d * b.ws, lesion.size * b.ws,
                             lesion.size * b.ws * 0.7, lesion.angle)
            rim = np.clip(np.sqrt(np.clip(1 - e ** 2, 0, 1)), 0, 1) * (e > 0)  # 1 at the edge
            dens = dens * (1 - lesion.strength * np.clip(e * 1.6, 0, 1)) + 0.25 * dens * rim ** 6
    return dens.astype(np.float32), (slice(y0, y1), slice(x0, x1))


def _point(b: Bone, t: float, d: float) -> tuple[float, float]:
    ax, ay = b.p1[0] - b.p0[0], b.p1[1] - b.p0[1]
    length = float(np.hypot(ax, ay)) or 1.0
    ux, uy = ax / length, ay / length
    px, py = b.p0[0] + ax * t, b.p0[1] + ay * t
    return px - uy * d, py + ux * d


def _hardware(b: Bone, les: _Lesion, shape) -> np.ndarray:
    """A plate along the shaft with screws across it (metal density)."""
    canvas = dr.Canvas(shape)
    half = 0.12 + 0.12 * les.size / 2
    ta, tb = max(0.12, les.t - half), min(0.88, les.t + half)
    side = 1 if les.d >= 0 else -1
    canvas.line([_point(b, ta, side * b.ws * 1.15), _point(b, tb, side * b.ws * 1.15)], max(2, 0.35 * b.ws))
    for t in np.linspace(ta + 0.03, tb - 0.03, int(3 + 2 * les.strength)):
        canvas.line([_point(b, t, side * b.ws * 1.5), _point(b, t, -side * b.ws * 1.1)], max(1, 0.22 * b.ws))
    return dr.blur(canvas.array(), 0.6) * _METAL


def _degeneration(bones: list[Bone], les: _Lesion, shape) -> np.ndarray:
    """Osteophytes and subchondral sclerosis at the joint at the end of bone ``les.bone``."""
    dens = np.zeros(shape, np.float32)
    b = bones[les.bone]
    end_t = 1.0 if les.t > 0.5 else 0.0
    r = b.w1 if end_t else b.w0
    for sgn in (-1, 1):  # marginal osteophytes
        cx, cy = _point(b, end_t + (0.02 if end_t else -0.02), sgn * r * 1.02)
        dr.add_ellipsoid(dens, cx, cy, 0.22 * r * (0.7 + les.size / 3) + 0.5, 0.14 * r + 1.2, 0.0,
                         0.4 * les.strength + 0.6)
    cx, cy = _point(b, end_t, 0.0)
    dr.add_ellipsoid(dens, cx, cy, 0.85 * r, 0.25 * r + 1.5, np.arctan2(b.p1[1] - b.p0[1], b.p1[0] - b.p0[0]) + np.pi / 2,
                     0.45 + 0.25 * les.strength)
    return dens


def _lesion_in_frame(bones: list[Bone], les: _Lesion, aspect: float) -> bool:
    """True when the abnormality's centre (canonical units) lies inside the frame, with a margin."""
    t = (1.0 if les.t > 0.5 else 0.0) if les.kind == "degeneration" else les.t
    x, y = _point(bones[les.bone], t, 0.0)
    return _FRAME_MARGIN < y < 1 - _FRAME_MARGIN and abs(x) < aspect / 2 - _FRAME_MARGIN


def _draw_lesion(rng: np.random.Generator, bones: list[Bone], kind: str, sev: float, aspect: float = 1.0) -> _Lesion:
    """One abnormality on a long bone, redrawn (same stream) until it lies inside the frame."""
    les = _draw_lesion_once(rng, bones, kind, sev)
    for _ in range(_PLACEMENT_TRIES):
        if _lesion_in_frame(bones, les, aspect):
            break
        les = _draw_lesion_once(rng, bones, kind, sev)
    return les


def _draw_lesion_once(rng: np.random.Generator, bones: list[Bone], kind: str, sev: float) -> _Lesion:
    longs = [i for i, b in enumerate(bones) if b.long] or list(range(len(bones)))
    i = int(rng.choice(longs))
    if kind == "fracture":
        return _Lesion(kind, i, rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.9) * sev + 0.3, 1.0,
                       rng.uniform(-0.6, 0.6), 0.75 + 0.25 * sev)
    if kind == "hardware":
        return _Lesion(kind, i, rng.uniform(0.4, 0.6), rng.choice([-1.0, 1.0]), 1 + 2 * sev, 0.0, sev)
    if kind == "lytic lesion":
        return _Lesion(kind, i, rng.choice([rng.uniform(0.12, 0.25), rng.uniform(0.75, 0.88)]),
                       rng.uniform(-0.3, 0.3), 1.0 + 0.6 * sev, rng.uniform(-0.4, 0.4), 0.75 + 0.2 * sev)
    if kind == "degeneration":
        return _Lesion(kind, i, rng.choice([0.0, 1.0]), 0.0, 1 + 2 * sev, 0.0, sev)
    raise ValueError(f"unknown limb abnormality {kind!r}; known: {', '.join(LIMB_ABNORMALITIES)}")


def _render_bones(bones: list[Bone], shape, lesion: _Lesion | None) -> np.ndarray:
    dens = np.zeros(shape, np.float32)
    for i, b in enumerate(bones):
        les = lesion if lesion is not None and lesion.bone == i and lesion.kind in ("fracture", "lytic lesion") else None
        d, (sy, sx) = _bone_density(b, shape, les)
        if d.size:
            dens[sy, sx] += d
    return dens


def _soft_tissue(bones: list[Bone], shape, h: int) -> np.ndarray:
    canvas = dr.Canvas(shape)
    for b in bones:
        canvas.line([b.p0, b.p1], 2.6 * max(b.w0, b.w1, 1.6 * b.ws) + 0.03 * h)
    return np.sqrt(np.clip(dr.blur(canvas.array(), 0.03 * h) * 1.5, 0, 1))


def render_limb(study_type: str, seed: int, view: int = 0, size: int = 512,
                abnormality: str | None = None, severity: float | None = None,
                width: int | None = None) -> Phantom:
    """Render one view of a synthetic upper-limb study.

    Args:
        study_type: one of ``MURA_STUDY_TYPES`` (e.g. "XR_WRIST").
        seed: study seed: the same seed gives the same patient anatomy and abnormality in all views.
        view: 0 = AP/PA, 1 = lateral, 2 = oblique (>= 3 reuses them with other poses).
        size: image height in pixels (>= 64).
        abnormality: None (normal) or one of ``LIMB_ABNORMALITIES``.
        severity: in [0, 1] (size/contrast of the abnormality); None draws it from the seed.
        width: image width in pixels (default ``size * ASPECT[study_type]``).

    Returns:
        Phantom with image float32 (size, width) in [0, 1]; findings hold at most one Finding;
        anatomy {"limb", "bone"}; info {"study_type", "view", "label" (1 abnormal / 0 normal), "seed"}.
    """
    if study_type not in MURA_STUDY_TYPES:
        raise ValueError(f"unknown study type {study_type!r}; known: {', '.join(MURA_STUDY_TYPES)}")
    h = int(size)
    w = int(width or max(64, round(size * ASPECT[study_type])))
    if h < 64 or w < 32:
        raise ValueError(f"limb phantoms need at least 64 x 32 px, got {h}x{w}")
    shape = (h, w)
    canon = _layout(study_type, dr.rng_for(seed, _ANATOMY))
    vrng = dr.rng_for(seed, _VIEW, view)
    vname = VIEWS[view % 3]
    bones = _pose(canon, vname, vrng, h, w, study_type)
    arng = dr.rng_for(seed, _ABNORMAL)
    sev = float(arng.uniform(0.25, 1.0) if severity is None else severity)
    lesion = _draw_lesion(arng, canon, abnormality, sev, ASPECT[study_type]) if abnormality else None

    bone = _render_bones(bones, shape, None)
    soft = _soft_tissue(bones, shape, h)
    extra = np.zeros(shape, np.float32)
    if lesion is not None:
        if lesion.kind in ("fracture", "lytic lesion"):
            extra = _render_bones(bones, shape, lesion) - bone
        elif lesion.kind == "hardware":
            extra = _hardware(bones[lesion.bone], lesion, shape)
        else:
            extra = _degeneration(bones, lesion, shape)
    erng = dr.rng_for(seed, _EXPOSURE, view)
    density = 0.3 * soft + 0.9 * bone + extra + 0.02 * dr.smooth_noise(erng, shape, 0.03 * h) * soft
    img = dr.expose(np.clip(density, 0, None), erng, k=erng.uniform(1.2, 1.6), gamma=erng.uniform(0.85, 1.2),
                    noise=erng.uniform(0.006, 0.018), gain=erng.uniform(0.9, 1.0), offset=erng.uniform(0.0, 0.04))
    anatomy = {"limb": soft > 0.02, "bone": ndimage.binary_dilation(bone > 0.02, iterations=3)}
    findings = []
    if lesion is not None:
        mask = ndimage.binary_dilation(np.abs(extra) > 0.02, iterations=2)
        box = dr.bbox(mask) or (0.0, 0.0, 1.0, 1.0)
        findings.append(Finding(abnormality, mask, box, sev))
    info = {"seed": int(seed), "study_type": study_type, "view": vname, "label": int(lesion is not None),
            "anatomy": "limb"}
    return Phantom(img, findings, anatomy, info)


def render_study(study_type: str, seed: int, size: int = 512, abnormality: str | None = None,
                 n_views: int | None = None) -> list[Phantom]:
    """All views (2-3, from the seed unless given) of one synthetic study; see :func:`render_limb`."""
    n = n_views or int(dr.rng_for(seed, _VIEW, 99).integers(2, 4))
    return [render_limb(study_type, seed, v, size, abnormality) for v in range(n)]
