"""Evaluation metrics, thresholds, calibration, plots, MURA study metrics and the model card."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, cohen_kappa_score, roc_auc_score

from radtriage import evaluation as ev
from radtriage.labels import CHEST_CLASSES, PROVENANCE_NONE, PROVENANCE_REAL, PROVENANCE_SYNTHETIC
from radtriage.model_card import INTENDED_USE, write_model_card

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def informative(n: int, c: int, seed: int = 0, missing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~25% prevalence and probabilities that rank positives higher on average."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.25).astype(float)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, c)), 0, 1)
    y[rng.random((n, c)) < missing] = np.nan
    return y, p


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval written out, to check the library call against."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# ----------------------------------------------------------------------------- AUROC / AP


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_auroc_ap_equal_sklearn_with_ties_and_missing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 60))
    y = rng.integers(0, 2, n).astype(float)
    y[:2] = [0, 1]
    score = np.round(rng.random(n), 1)  # coarse scores -> many ties
    keep = rng.random(n) > 0.3
    keep[:2] = True
    auroc, ap = ev.auroc_ap_batch(np.stack([y, y]), np.stack([score, score]), np.stack([np.ones(n, bool), keep]))
    assert auroc[0] == pytest.approx(roc_auc_score(y, score))
    assert ap[0] == pytest.approx(average_precision_score(y, score))
    assert auroc[1] == pytest.approx(roc_auc_score(y[keep], score[keep]))
    assert ap[1] == pytest.approx(average_precision_score(y[keep], score[keep]))


def test_vectorised_auroc_ap_undefined_rows_are_nan() -> None:
    auroc, ap = ev.auroc_ap_batch(np.array([[0, 0, 0], [1, 1, 1]]), np.array([[0.1, 0.2, 0.3]] * 2))
    assert np.isnan(auroc).all()
    assert np.isnan(ap[0]) and ap[1] == 1.0


# ----------------------------------------------------------------------------- per-class metrics


def test_per_class_metrics_values_ignore_missing_labels() -> None:
    y, p = informative(120, 3, seed=1, missing=0.3)
    table = ev.per_class_metrics(y, p, ["a", "b", "c"], thresholds=[0.5, 0.4, 0.6], n_boot=200)
    assert table["class"].tolist() == ["a", "b", "c"]
    for c, row in table.iterrows():
        m = ~np.isnan(y[:, c])
        yt, yp = y[m, c], p[m, c]
        assert row["n"] == m.sum() and row["n_pos"] == yt.sum()
        assert row["prevalence"] == pytest.approx(yt.mean())
        assert row["auroc"] == pytest.approx(roc_auc_score(yt, yp))
        assert row["ap"] == pytest.approx(average_precision_score(yt, yp))
        assert row["auroc_lo"] < row["auroc"] < row["auroc_hi"]
        assert row["ap_lo"] < row["ap"] < row["ap_hi"]
        tp = int(((yp >= row["threshold"]) & (yt == 1)).sum())
        assert row["sensitivity"] == pytest.approx(tp / yt.sum())
        assert (row["sensitivity_lo"], row["sensitivity_hi"]) == pytest.approx(wilson(tp, int(yt.sum())), abs=1e-6)
        tn = int(((yp < row["threshold"]) & (yt == 0)).sum())
        assert row["specificity"] == pytest.approx(tn / (yt == 0).sum())
        assert row["note"] == ""
    assert table["threshold"].tolist() == [0.5, 0.4, 0.6]


def test_per_class_metrics_undefined_classes_get_nan_and_a_note() -> None:
    y, p = informative(50, 3, seed=2)
    y[:, 0] = 0.0  # no positives
    y[:, 1] = np.nan  # never labelled
    table = ev.per_class_metrics(y, p, n_boot=100).set_index("class")
    assert np.isnan(table.loc["class_0", ["auroc", "auroc_lo", "ap"]].astype(float)).all()
    assert table.loc["class_0", "note"] == ev.NOTE_NO_POS
    assert np.isnan(table.loc["class_0", "sensitivity"]) and table.loc["class_0", "specificity"] > 0
    assert table.loc["class_1", "n"] == 0 and table.loc["class_1", "note"] == ev.NOTE_NO_LABELS
    assert table.loc["class_2", "auroc"] > 0.5 and table.loc["class_2", "note"] == ""


def test_bootstrap_interval_skips_single_label_resamples_and_narrows_with_n() -> None:
    # 2 positives in 30: many resamples hold no positive and must be skipped, not crash
    y = np.zeros((30, 1))
    y[[3, 17]] = 1
    p = np.linspace(0, 1, 30)[:, None]
    row = ev.per_class_metrics(y, p, n_boot=500).iloc[0]
    assert 300 < row["n_boot_valid"] < 500
    assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"]
    small = ev.per_class_metrics(*informative(60, 1, seed=3), n_boot=300).iloc[0]
    large = ev.per_class_metrics(*informative(2000, 1, seed=3), n_boot=300).iloc[0]
    assert (large["auroc_hi"] - large["auroc_lo"]) < 0.5 * (small["auroc_hi"] - small["auroc_lo"])


def test_perfect_separation_has_degenerate_interval() -> None:
    y = np.array([0, 0, 0, 1, 1, 1], float)[:, None]
    row = ev.per_class_metrics(y, y * 0.8 + 0.1, n_boot=200).iloc[0]
    assert (row["auroc"], row["auroc_lo"], row["auroc_hi"]) == (1.0, 1.0, 1.0)
    assert row["sensitivity"] == 1.0 and row["specificity"] == 1.0


def test_macro_auroc_averages_defined_classes() -> None:
    y, p = informative(150, 4, seed=4, missing=0.2)
    y[:, 3] = 1.0  # no negatives: excluded
    macro = ev.macro_auroc(y, p, n_boot=300)
    expected = np.mean([roc_auc_score(y[~np.isnan(y[:, c]), c], p[~np.isnan(y[:, c]), c]) for c in range(3)])
    assert macro["n_classes"] == 3 and macro["auroc"] == pytest.approx(expected)
    assert macro["lo"] < macro["auroc"] < macro["hi"] and macro["n_boot_valid"] == 300
    none = ev.macro_auroc(np.ones((5, 2)), np.random.default_rng(0).random((5, 2)))
    assert math.isnan(none["auroc"]) and none["n_classes"] == 0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="must both be"):
        ev.per_class_metrics(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        ev.per_class_metrics(np.full((3, 1), 2.0), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="thresholds"):
        ev.per_class_metrics(np.zeros((3, 2)), np.zeros((3, 2)), thresholds=[0.5])


# ----------------------------------------------------------------------------- thresholds


def test_choose_thresholds_rules() -> None:
    y, p = informative(400, 3, seed=5)
    y[:, 2] = np.nan
    youden = ev.choose_thresholds(y, p, "youden")
    sens = ev.choose_thresholds(y, p, "sensitivity", target_sensitivity=0.9)
    f1 = ev.choose_thresholds(y, p, "f1")
    assert youden[2] == sens[2] == f1[2] == 0.5
    for c in range(2):
        yt, yp = y[:, c], p[:, c]

        def sens_spec(t: float) -> tuple[float, float]:
            return ((yp >= t) & (yt == 1)).sum() / (yt == 1).sum(), ((yp < t) & (yt == 0)).sum() / (yt == 0).sum()

        # Youden's threshold beats every candidate threshold on sens + spec
        best = max(sum(sens_spec(t)) for t in np.unique(yp))
        assert sum(sens_spec(youden[c])) == pytest.approx(best)
        # sensitivity rule: reaches the target, and the next higher score would not
        assert sens_spec(sens[c])[0] >= 0.9
        higher = yp[yp > sens[c]]
        assert higher.size == 0 or sens_spec(higher.min())[0] < 0.9
        pred = yp >= f1[c]
        tp = (pred & (yt == 1)).sum()
        f1_value = 2 * tp / (pred.sum() + (yt == 1).sum())
        assert f1_value >= max(
            2 * ((yp >= t) & (yt == 1)).sum() / ((yp >= t).sum() + (yt == 1).sum()) for t in np.unique(yp)
        ) - 1e-12


def test_threshold_selection_states_rule_and_notes() -> None:
    y, p = informative(100, 2, seed=6)
    y[:, 1] = 0.0
    sel = ev.threshold_selection(y, p, ["a", "b"], rule="sensitivity", target_sensitivity=0.8, split_name="val X")
    assert sel["rule"] == "sensitivity" and "0.8" in sel["description"] and sel["split"] == "val X"
    assert sel["thresholds"]["b"] == 0.5 and "b" in sel["notes"] and "a" not in sel["notes"]
    with pytest.raises(ValueError, match="unknown threshold rule"):
        ev.choose_thresholds(y, p, "best")


# ----------------------------------------------------------------------------- calibration


def test_fit_temperature_recovers_overconfidence_and_lowers_ece() -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(0, 2, (20000, 2))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    overconfident = 1 / (1 + np.exp(-3 * z))  # logits x3 -> true T = 3
    y[:, 1] = np.nan  # unlabelled class -> T stays 1
    temps = ev.fit_temperature(y, overconfident)
    assert temps[0] == pytest.approx(3.0, rel=0.05) and temps[1] == 1.0
    temps_logits = ev.fit_temperature(y, 3 * z, from_logits=True)
    assert temps_logits[0] == pytest.approx(temps[0], rel=1e-3)
    calibrated = ev.apply_temperature(overconfident, temps)
    assert ev.expected_calibration_error(y, calibrated) < 0.02 < ev.expected_calibration_error(y, overconfident)
    unclipped = np.abs(3 * z[:, 0]) < 15  # beyond, probabilities are clipped to 1e-7 before the logit
    np.testing.assert_allclose(
        calibrated[unclipped, 0], 1 / (1 + np.exp(-z[unclipped, 0] * 3 / temps[0])), atol=1e-6
    )


def test_temperature_is_bounded() -> None:
    y = np.array([0, 1, 0, 1, 1, 0], float)[:, None]
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7])[:, None]  # anti-correlated: wants T -> inf
    assert ev.TEMPERATURE_BOUNDS[0] <= ev.fit_temperature(y, p)[0] <= ev.TEMPERATURE_BOUNDS[1]
    with pytest.raises(ValueError):
        ev.apply_temperature(p, 0.0)


def test_expected_calibration_error_hand_values() -> None:
    y = np.array([1, 0, 1, 0, np.nan])
    assert ev.expected_calibration_error(y, np.array([0.8, 0.8, 0.8, 0.8, 0.1])) == pytest.approx(0.3)
    # two bins: [0.1 with label 0] gap 0.1, [0.9 with label 1] gap 0.1
    assert ev.expected_calibration_error(np.array([0.0, 1.0]), np.array([0.1, 0.9])) == pytest.approx(0.1)
    assert ev.expected_calibration_error(np.array([1.0]), np.array([1.0])) == 0.0


def test_plots_are_written(tmp_path) -> None:
    y, p = informative(80, 3, seed=8)
    y[:, 2] = 0
    roc = ev.roc_plot(y, p, ["a", "b", "c"], tmp_path / "roc.png")
    rel = ev.reliability_diagram(y, p, tmp_path / "sub" / "rel.png", "test", calibrated=p * 0.9)
    for path in (roc, rel):
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


# ----------------------------------------------------------------------------- MURA


def test_aggregate_studies_is_the_mean_of_images() -> None:
    out = ev.aggregate_studies(["s2", "s1", "s2", "s2", "s3"], np.array([0.2, 0.9, 0.4, 0.9, 0.1]))
    assert out["study_id"].tolist() == ["s2", "s1", "s3"]
    assert out["n_images"].tolist() == [3, 1, 1]
    np.testing.assert_allclose(out["probability"], [0.5, 0.9, 0.1])
    with pytest.raises(ValueError):
        ev.aggregate_studies(["a"], np.array([0.1, 0.2]))


def test_mura_metrics_overall_and_per_type() -> None:
    table = pd.DataFrame(
        {
            "study_id": [f"s{i}" for i in range(8)],
            "study_type": ["XR_WRIST"] * 5 + ["XR_HAND"] * 3,
            "label": [1, 1, 0, 0, 1, 1, 1, 1],
            "probability": [0.9, 0.4, 0.2, 0.6, 0.7, 0.8, 0.3, 0.9],
            "threshold": 0.5,
        }
    )
    out = ev.mura_metrics(table).set_index("group")
    assert out.index.tolist() == ["overall", "XR_HAND", "XR_WRIST"]
    assert out["n"].tolist() == [8, 3, 5]
    pred = (table["probability"] >= 0.5).astype(int)
    assert out.loc["overall", "accuracy"] == pytest.approx((pred == table["label"]).mean())
    assert out.loc["overall", "kappa"] == pytest.approx(cohen_kappa_score(table["label"], pred))
    assert out.loc["XR_WRIST", "auroc"] == pytest.approx(roc_auc_score([1, 1, 0, 0, 1], [0.9, 0.4, 0.2, 0.6, 0.7]))
    assert np.isnan(out.loc["XR_HAND", "auroc"]) and "one label" in out.loc["XR_HAND", "note"]
    assert out.loc["XR_HAND", "accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="repeated study ids"):
        ev.mura_metrics(pd.concat([table, table]))


# ----------------------------------------------------------------------------- bundle and model card


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[dict, dict]:
    plots = tmp_path_factory.mktemp("plots")
    y, p = informative(100, len(CHEST_CLASSES), seed=9, missing=0.2)
    y[:, 2] = np.nan  # a class the split never labels
    temps = ev.fit_temperature(y, p)
    thr = ev.choose_thresholds(y, p)
    metrics = ev.evaluate(
        y, ev.apply_temperature(p, temps), CHEST_CLASSES, "unit-test validation, 100 images",
        thresholds=thr, threshold_rule=ev.threshold_rule_text("youden"), y_prob_uncalibrated=p,
        plots_dir=plots, n_boot=200,
    )
    provenance = {c: PROVENANCE_REAL for c in CHEST_CLASSES}
    provenance[CHEST_CLASSES[0]] = PROVENANCE_SYNTHETIC
    provenance[CHEST_CLASSES[5]] = PROVENANCE_NONE
    metadata = {
        "name": "chest-test-model",
        "task": "chest",
        "classes": list(CHEST_CLASSES),
        "provenance": provenance,
        "thresholds": thr.tolist(),
        "temperature": temps.tolist(),
        "preprocess": {"size": 256, "resize": "pad"},
        "training": {"data": ["NIH sample train part", "chest phantoms"], "splits": "by patient"},
        "metrics": {"validation": metrics},
    }
    return metadata, {"ROC": plots / "roc.png", "Reliability": plots / "reliability.png"}


def test_evaluate_is_json_serialisable_and_states_split(bundle) -> None:
    metadata, plots = bundle
    metrics = metadata["metrics"]["validation"]
    text = json.dumps(metrics, allow_nan=False)  # NaN would raise here
    assert metrics["split"] == "unit-test validation, 100 images" and metrics["n_images"] == 100
    rows = {r["class"]: r for r in metrics["per_class"]}
    assert rows[CHEST_CLASSES[2]]["auroc"] is None and rows[CHEST_CLASSES[2]]["n"] == 0
    assert metrics["calibration"]["ece_after"] < metrics["calibration"]["ece_before"]
    assert metrics["macro_auroc"]["n_classes"] == 13
    assert metrics["plots"] == {"roc": "roc.png", "reliability": "reliability.png"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in plots.values())
    assert "NaN" not in text


def test_model_card_comes_from_metadata(bundle, tmp_path) -> None:
    metadata, plots = bundle
    card = write_model_card(metadata, tmp_path / "card" / "MODEL_CARD.md", plots).read_text()
    metrics = metadata["metrics"]["validation"]
    assert "# Model card: chest-test-model" in card and INTENDED_USE in card
    assert metrics["split"] in card
    row = next(r for r in metrics["per_class"] if r["class"] == "Cardiomegaly")
    line = next(l for l in card.splitlines() if l.startswith("| Cardiomegaly |"))
    assert f"{row['auroc']:.3f} [{row['auroc_lo']:.3f}, {row['auroc_hi']:.3f}]" in line
    assert f"| {row['n']} |" in line and PROVENANCE_REAL in line
    macro = metrics["macro_auroc"]
    assert f"{macro['auroc']:.3f} [{macro['lo']:.3f}, {macro['hi']:.3f}]" in card
    cal = metrics["calibration"]
    assert f"before {cal['ece_before']:.3f}, after {cal['ece_after']:.3f}" in card
    limits = card.split("## Limitations")[1]
    assert f"**Synthetic only** (learned from phantoms, never from real labels): {CHEST_CLASSES[0]}." in limits
    assert CHEST_CLASSES[5] in limits and "provenance \"none\"" in limits
    assert CHEST_CLASSES[2] in limits  # not evaluable on this split
    assert "phantom radiographs only" not in card
    assert "![ROC](../" in card and "roc.png)" in card  # relative path from the card's folder


def test_model_card_calls_out_phantom_only_and_missing_metrics(tmp_path) -> None:
    metadata = {
        "name": "mura-phantom",
        "task": "mura",
        "classes": ["Abnormal"],
        "provenance": [PROVENANCE_SYNTHETIC],
        "training": {"data": "limb phantoms", "phantom_only": True},
    }
    card = write_model_card(metadata, tmp_path / "card.md").read_text()
    assert "Trained on synthetic phantom radiographs only" in card
    assert "No held-out metrics are recorded" in card and "Synthetic only" in card
    study = pd.DataFrame(
        {"study_id": ["a", "b", "c"], "study_type": ["XR_HAND"] * 3, "label": [1, 0, 1],
         "probability": [0.8, 0.3, 0.4], "threshold": 0.5}
    )
    metadata["metrics"] = ev.evaluate_mura(study, "phantom test studies")
    card = write_model_card(metadata, tmp_path / "card.md").read_text()
    assert "phantom test studies" in card and "| overall | 3 | 2 | 0.667 | 1.000 |" in card
    with pytest.raises(ValueError, match="classes"):
        write_model_card({"name": "x"}, tmp_path / "x.md")


def test_model_card_accepts_one_scalar_temperature(bundle, tmp_path) -> None:
    metadata, plots = bundle
    card = write_model_card({**metadata, "temperature": 1.5}, tmp_path / "MODEL_CARD.md", plots).read_text()
    calibration = card.split("## Calibration")[1].split("##")[0]
    assert all(f"| {c} | 1.50 |" in calibration for c in CHEST_CLASSES)


def test_mura_kappa_has_a_bootstrap_interval_around_it() -> None:
    from sklearn.metrics import cohen_kappa_score

    from radtriage.evaluation import _kappa_ci, mura_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    p = np.where(rng.random(120) < 0.8, y * 0.6 + 0.2, rng.random(120))
    df = pd.DataFrame({"study_id": range(120), "study_type": "XR_HAND", "label": y, "probability": p, "threshold": 0.5})
    row = mura_metrics(df).iloc[0]
    assert row["kappa_lo"] < row["kappa"] < row["kappa_hi"]
    assert row["kappa"] == pytest.approx(cohen_kappa_score(y, (p >= 0.5).astype(int)))
    # the vectorised bootstrap computes sklearn's kappa on each resample
    idx = np.random.default_rng(0).integers(0, 120, (1000, 120))
    ref = [cohen_kappa_score(y[i], (p[i] >= 0.5).astype(int)) for i in idx[:50]]
    lo, hi = _kappa_ci(y, (p >= 0.5).astype(int), n_boot=50)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(ref, [2.5, 97.5])))


def test_specificity_rule_keeps_the_false_flag_rate_at_its_target() -> None:
    from radtriage.evaluation import choose_thresholds, threshold_rule_text

    rng = np.random.default_rng(3)
    y = (rng.random((400, 2)) < 0.3).astype(float)
    p = np.clip(0.35 * y + rng.random((400, 2)) * 0.65, 0, 1)
    thr = choose_thresholds(y, p, "specificity", target_specificity=0.9)
    for c in range(2):
        neg = p[y[:, c] == 0, c]
        assert (neg < thr[c]).mean() >= 0.9  # specificity reached ...
        lower = p[:, c][p[:, c] < thr[c]].max()  # the next observed score down would miss the target
        assert (neg < lower).mean() < 0.9
    assert "specificity >= 0.9" in threshold_rule_text("specificity", target_specificity=0.9)
