"""The fixed front-end + linear head: filter values, layers, sklearn -> Keras head, .h5 round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from radtriage import frontends
from radtriage.labels import N_CHEST

# Tiny but complete: 2 scales, 2 grids, histogram and thumbnail.
TINY = frontends.FrontEndConfig(size=32, scales=2, orientations=4, map_size=8, grids=(1, 2),
                                hist_bins=4)


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random 'radiographs' in [0, 1] with a bright blob whose side carries the label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    out = np.empty((n, 32, 32, 1), np.float32)
    for i in range(n):
        cx = 8 if i % 2 else 24
        blob = np.exp(-((xx - cx) ** 2 + (yy - 16) ** 2) / 30.0)
        out[i, ..., 0] = np.clip(0.3 * blob + 0.5 * rng.random((32, 32)) * 0.3 + 0.2, 0, 1)
    return out


@pytest.fixture(scope="module")
def fitted() -> tuple[keras.Model, np.ndarray, StandardScaler, dict[int, LogisticRegression]]:
    """A tiny model whose head is copied from per-class sklearn fits on its own features."""
    x = _images(40)
    feats = frontends.build_feature_extractor(TINY).predict(x, verbose=0)
    y = np.stack([np.arange(40) % 2, (np.arange(40) // 2) % 2], axis=1)
    scaler = StandardScaler().fit(feats)
    z = scaler.transform(feats)
    classifiers = {k: LogisticRegression(C=0.1, class_weight="balanced").fit(z, y[:, j])
                   for j, k in enumerate((3, 10))}
    model = frontends.build_linear_model(TINY, N_CHEST)
    head = frontends.head_from_sklearn(scaler, classifiers, N_CHEST,
                                       constant_logits=np.full(N_CHEST, -2.0))
    frontends.set_head(model, head)
    return model, x, scaler, classifiers


def test_morlet_bank_zero_mean_unit_l1_pairs() -> None:
    bank = frontends.morlet_bank(kernel_size=7, orientations=8)
    assert bank.shape == (7, 7, 1, 18)
    np.testing.assert_allclose(bank.sum(axis=(0, 1, 2)), 0.0, atol=1e-6)
    pairs = bank[..., 0, :].reshape(7, 7, 9, 2)
    l1 = np.abs(pairs[..., 0] + 1j * pairs[..., 1]).sum(axis=(0, 1))
    np.testing.assert_allclose(l1, 1.0, rtol=1e-5)


def test_filter_bank_ignores_flat_images() -> None:
    model = frontends.build_feature_extractor(TINY)
    flat = np.full((1, 32, 32, 1), 0.5, np.float32)
    maps = keras.Model(model.input, model.get_layer(frontends.GRADCAM_LAYER).output)(flat)
    energies = np.asarray(maps)[0, 2:-2, 2:-2, : TINY.scales * (TINY.orientations + 1)]
    # log(1 + ~0) away from the zero-padded border: flat regions carry no texture energy
    np.testing.assert_allclose(energies, 0.0, atol=1e-3)


def test_modulus_of_pairs() -> None:
    x = np.array([[[[3.0, 4.0, 0.0, -2.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(frontends.Modulus()(x)), [[[[5.0, 2.0]]]], rtol=1e-6)


def test_soft_histogram_memberships() -> None:
    x = np.array([0.0, 1 / 3, 0.5, 1.0], np.float32).reshape(1, 2, 2, 1)
    h = np.asarray(frontends.SoftHistogram(4)(x))
    np.testing.assert_allclose(h.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(h[0, 0, 0], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(h[0, 0, 1], [0, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(h[0, 1, 0], [0, 0.5, 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(h[0, 1, 1], [0, 0, 0, 1], atol=1e-6)


def test_feature_count_matches_extractor() -> None:
    feats = frontends.build_feature_extractor(TINY).predict(_images(2), verbose=0)
    assert feats.shape == (2, frontends.feature_count(TINY)) == (2, (2 * 5 + 4 + 1) * (1 + 4))


def test_copied_head_equals_sklearn_predict_proba(fitted) -> None:
    model, x, scaler, classifiers = fitted
    feats = frontends.build_feature_extractor(TINY).predict(x, verbose=0)
    probs = model.predict(x, verbose=0)
    for k, clf in classifiers.items():
        expected = clf.predict_proba(scaler.transform(feats))[:, 1]
        np.testing.assert_allclose(probs[:, k], expected, atol=1e-5)
    # outputs without a classifier are the constant sigmoid(-2)
    others = [k for k in range(N_CHEST) if k not in classifiers]
    np.testing.assert_allclose(probs[:, others], 1 / (1 + np.exp(2.0)), atol=1e-6)
    # the label (blob side) is learnable, so the copied head separates it
    assert probs[1::2, 3].mean() > probs[0::2, 3].mean() + 0.2


def test_h5_round_trip_identical(fitted, tmp_path) -> None:
    model, x, _, _ = fitted
    path = tmp_path / "model.h5"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_flat_model_with_named_layers(fitted) -> None:
    model = fitted[0]
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.input_shape == (None, 32, 32, 1)
    assert len(model.get_layer(frontends.GRADCAM_LAYER).output.shape) == 4
    logits = model.get_layer("logits")
    assert isinstance(logits, keras.layers.Dense) and logits.units == N_CHEST
    probs = model.get_layer("probabilities")
    assert probs.get_config()["activation"] == "sigmoid" and model.layers[-1] is probs
    assert not model.get_layer("filter_bank").trainable


def test_gradcam_target_gradient_is_spatial(fitted) -> None:
    import tensorflow as tf

    model, x, _, _ = fitted
    grad_model = keras.Model(model.input, [model.get_layer(frontends.GRADCAM_LAYER).output,
                                           model.get_layer("logits").output])
    with tf.GradientTape() as tape:
        maps, logits = grad_model(x[:1])
        score = logits[:, 3]
    grads = tape.gradient(score, maps).numpy()
    assert np.isfinite(grads).all()
    # a 2x2 grid makes the gradient differ between image halves
    assert np.abs(grads[0, :, :4] - grads[0, :, 4:]).max() > 0


def test_config_rejects_bad_geometry() -> None:
    with pytest.raises(ValueError, match="divisible"):
        frontends.FrontEndConfig(size=100, map_size=16, scales=4)
    with pytest.raises(ValueError, match="grid"):
        frontends.FrontEndConfig(grids=(3,))
    with pytest.raises(ValueError, match="odd"):
        frontends.FrontEndConfig(kernel_size=6)
    cfg = frontends.FrontEndConfig(grids=(1, 4))
    assert frontends.FrontEndConfig.from_dict(cfg.to_dict()) == cfg


def test_fit_head_masks_missing_labels_and_keeps_constant_outputs() -> None:
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((60, 5))
    labels = np.full((60, 3), np.nan)
    labels[:, 0] = feats[:, 0] > 0  # learnable from feature 0
    labels[:30, 1] = feats[:30, 1] > 0  # half missing: fitted on the 30 labelled rows only
    head = frontends.fit_head(feats, labels, c=1.0, constant_logit=-3.0)
    assert head.extra["fitted"] == [0, 1]
    logits = head.logits(feats)
    np.testing.assert_allclose(logits[:, 2], -3.0)
    assert np.corrcoef(logits[:, 0], feats[:, 0])[0, 1] > 0.9
    assert np.corrcoef(logits[:, 1], feats[:, 1])[0, 1] > 0.8
