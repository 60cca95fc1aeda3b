"""Heatmaps on the original image: the model-input heatmap mapped back through the preprocessing's
geometry (:func:`radtriage.preprocess.content_box`) and coloured over the grayscale pixels.

Whichever backend computed a Grad-CAM heatmap (:mod:`radtriage.gradcam` on Keras, the LiteRT export
in :mod:`radtriage.litert`), it is drawn here, once. This module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from PIL import Image

from radtriage.preprocess import PreprocessConfig, content_box


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap, coloured by a matplotlib colormap, over a grayscale image.

    Args:
        image: (H, W) float in [0, 1].
        heatmap: (H, W) float in [0, 1], same shape as ``image``.
        alpha: heatmap weight in [0, 1].
        cmap: matplotlib colormap name.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if image.shape != heatmap.shape or image.ndim != 2:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} must be the same 2-D shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colour = matplotlib.colormaps[cmap](np.clip(heatmap, 0, 1))[..., :3]
    grey = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=-1)
    return np.round(255 * ((1 - alpha) * grey + alpha * colour)).astype(np.uint8)


def _resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    pil = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    out = np.array(pil.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def crop_to_content(
    heatmap: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int] | None = None
) -> np.ndarray:
    """Cut the padding off a model-input-sized heatmap and optionally resize it.

    Args:
        heatmap: (S, S) in [0, 1].
        box: (top, left, height, width) from :func:`radtriage.preprocess.content_box`.
        size: (H, W) to resize to (the original image's shape); None keeps the crop's size.

    Returns:
        float32 (height, width) or (H, W), in [0, 1].
    """
    top, left, h, w = box
    crop = heatmap[top : top + h, left : left + w]
    return crop.astype(np.float32) if size is None else _resize(crop, *size)


def heatmap_for_original(heatmap: np.ndarray, shape: tuple[int, int], config: PreprocessConfig) -> np.ndarray:
    """Map a model-input heatmap back onto the original image of ``shape`` (H, W).

    "pad": the padding is cut off and the rest resized to (H, W). "crop": the model saw only the
    centre square of side min(H, W); the heatmap is resized onto it and is zero outside.

    Returns:
        float32 (H, W) in [0, 1], ready for :func:`overlay` with the original pixels.
    """
    h, w = shape
    if config.resize == "pad":
        return crop_to_content(heatmap, content_box(shape, config), (h, w))
    side = min(h, w)
    out = np.zeros((h, w), dtype=np.float32)
    top, left = (h - side) // 2, (w - side) // 2
    out[top : top + side, left : left + side] = _resize(heatmap, side, side)
    return out
