"""A model's out-of-distribution (OOD) score: how unlike its own training images an image is.

The score is a Mahalanobis distance in the model's own feature space (the ``"features"`` layer that
its heads read, :data:`radtriage.contract.FEATURES_LAYER`):

    d(x) = || (f(x) - mean) @ whitener ||,   whitener @ whitener.T = inverse(covariance)

with the covariance of the training images' features estimated by Ledoit-Wolf shrinkage on
standardised features (a full covariance of ~700 features from a few hundred images is singular;
shrinking towards the identity of the standardised space keeps it invertible without letting the
largest-scale features dominate). The threshold is the ``rate`` quantile of the distances of
held-out in-distribution images (the model's validation split), so about ``1 - rate`` of images like
the training ones are refused; the model card states the rate measured on its test split.

The fitted statistics live in ``ood.npz`` beside the model, recorded (with their SHA-256) in the
metadata's ``ood`` entry. Scoring is NumPy only; fitting imports scikit-learn.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OOD_FILE = "ood.npz"
DEFAULT_RATE = 0.99  # share of held-out in-distribution images that must pass
METHOD = ("Mahalanobis distance in the model's feature space (Ledoit-Wolf shrunk covariance of the "
          "standardised training features)")


@dataclass(frozen=True)
class OodModel:
    """Fitted OOD statistics of one model.

    Attributes:
        mean: (F,) float32 mean feature of the training images.
        whitener: (F, F) float32; ``||(f - mean) @ whitener||`` is the Mahalanobis distance.
        threshold: distance above which an image is out of distribution (> 0).
        rate: the share of held-out in-distribution images at or below the threshold when it was set.
    """

    mean: np.ndarray
    whitener: np.ndarray
    threshold: float
    rate: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, F) features -> (N,) float64 Mahalanobis distances, >= 0 (inf for non-finite features)."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != len(self.mean):
            raise ValueError(f"expected (N, {len(self.mean)}) features, got {f.shape}")
        d = np.sqrt(np.sum(((f - self.mean) @ self.whitener) ** 2, axis=1))
        return np.where(np.isfinite(d), d, np.inf)

    def ratio(self, features: np.ndarray) -> np.ndarray:
        """(N,) distance / threshold: above 1 = out of distribution."""
        return self.distance(features) / self.threshold

    def to_bytes(self) -> bytes:
        """The ``ood.npz`` content."""
        buf = io.BytesIO()
        np.savez_compressed(buf, mean=self.mean.astype(np.float32), whitener=self.whitener.astype(np.float32),
                            threshold=np.float64(self.threshold), rate=np.float64(self.rate))
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> OodModel:
        """Read an ``ood.npz`` (raises ValueError when it is not one)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["mean"], z["whitener"], float(z["threshold"]), float(z["rate"]))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path} is not an OOD statistics file ({e})") from None


def fit(train_features: np.ndarray, heldout_features: np.ndarray, rate: float = DEFAULT_RATE) -> OodModel:
    """Fit the statistics on training features and set the threshold on held-out in-distribution ones.

    Args:
        train_features: (N, F) features of the model's training images.
        heldout_features: (M, F) features of held-out images of the same distribution (validation).
        rate: in (0, 1): the share of held-out images that must be at or below the threshold.

    Returns:
        The fitted :class:`OodModel`.
    """
    from sklearn.covariance import LedoitWolf

    if not 0 < rate < 1:
        raise ValueError("rate must be in (0, 1)")
    x = np.asarray(train_features, np.float64)
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    cov = LedoitWolf(assume_centered=True).fit((x - mean) / scale).covariance_
    # whitener = diag(1/scale) @ L with L @ L.T = inverse(cov): the distance in standardised units
    chol = np.linalg.cholesky(np.linalg.inv(cov))
    whitener = chol / scale[:, None]
    provisional = OodModel(mean, whitener, 1.0, rate)
    threshold = float(np.quantile(provisional.distance(heldout_features), rate))
    return OodModel(mean.astype(np.float32), whitener.astype(np.float32), threshold, rate)


def refused_share(model: OodModel, features: np.ndarray) -> tuple[int, int]:
    """(images beyond the threshold, images) for a set of features: the figure a card reports."""
    ratio = model.ratio(features)
    return int(np.sum(ratio > 1)), int(len(ratio))
