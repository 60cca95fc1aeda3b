"""Tiny stand-in models in the shipped artifact format, for the dashboard's tests and benchmark.

``build_models(folder)`` writes ``folder/chest`` and ``folder/mura`` with
:func:`radtriage.artifact.save_artifact`: a tiny :func:`radtriage.architectures.small_cnn` with
seeded random weights and its verified LiteRT export (as the shipped models have), metadata (thresholds, provenance, metrics in
:func:`radtriage.evaluation.evaluate`'s shape on a named fake split) and a MODEL_CARD.md. Its
outputs mean nothing; the tests check that the page shows what the model and its metadata say.
"""

from __future__ import annotations

from pathlib import Path

from radtriage.labels import CHEST_CLASSES, MURA_CLASSES, PROVENANCE_REAL, PROVENANCE_SYNTHETIC
from radtriage.preprocess import PreprocessConfig

INPUT_SIZE = 64
SPLIT = "test-fixture split (random weights)"


def chest_fields() -> dict:
    """Metadata fields of the tiny chest model: even classes 'real labels' with metrics, odd synthetic."""
    provenance = {c: (PROVENANCE_REAL if i % 2 == 0 else PROVENANCE_SYNTHETIC) for i, c in enumerate(CHEST_CLASSES)}
    rows = [{"class": c, "auroc": 0.6 + 0.01 * i, "auroc_lo": 0.5 + 0.01 * i, "auroc_hi": 0.7 + 0.01 * i}
            for i, c in enumerate(CHEST_CLASSES) if provenance[c] == PROVENANCE_REAL]
    return {
        "thresholds": {c: 0.3 + 0.02 * i for i, c in enumerate(CHEST_CLASSES)},
        "temperature": {c: 1.0 for c in CHEST_CLASSES},
        "metrics": {"validation": {"split": SPLIT, "per_class": rows}},
        "provenance": provenance,
    }


def mura_fields() -> dict:
    return {
        "thresholds": {MURA_CLASSES[0]: 0.5},
        "temperature": {MURA_CLASSES[0]: 1.0},
        "metrics": {"split": SPLIT, "study_level": [{"group": "overall", "n": 10, "auroc": 0.55}]},
        "provenance": {MURA_CLASSES[0]: PROVENANCE_SYNTHETIC},
    }


def write_model(folder: Path, task: str, fields: dict, size: int, seed: int, width: int = 4, depth: int = 2) -> Path:
    """Save a tiny random-weight model of ``task`` with ``fields`` in its metadata, and its card."""
    import keras

    from radtriage.architectures import small_cnn
    from radtriage.artifact import ModelMetadata, save_artifact
    from radtriage.model_card import write_model_card

    keras.utils.set_random_seed(seed)
    metadata = ModelMetadata.for_task(task, task, PreprocessConfig(size=size), **fields)
    model = small_cnn(size, len(metadata.classes), width=width, depth=depth)
    saved = save_artifact(model, folder, metadata)
    write_model_card(saved.to_dict(), folder / "MODEL_CARD.md")
    return folder


def build_models(root: Path, size: int = INPUT_SIZE, width: int = 4, depth: int = 2, export: bool = True) -> Path:
    """Write ``root/chest`` and ``root/mura`` (small_cnn of ``width``/``depth``); returns ``root``.

    ``export``: add the verified LiteRT copies (probabilities and Grad-CAM), as the shipped models
    have, so the dashboard serves them as it serves those; without, it falls back to Keras.
    """
    write_model(root / "chest", "chest", chest_fields(), size, seed=1, width=width, depth=depth)
    write_model(root / "mura", "mura", mura_fields(), size, seed=2, width=width, depth=depth)
    if export:
        from radtriage.export import export_litert

        for task in ("chest", "mura"):
            export_litert(root / task)
    return root


# --- a real server, for the browser test and the benchmark -----------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` on 127.0.0.1:<free port> in a subprocess (a context manager).

    Attributes:
        url: the app's address once started.
        started_s: seconds from launch to the health endpoint answering.
    """

    def __init__(self, model_dir: Path, timeout_s: float = 120.0) -> None:
        self.model_dir, self.timeout_s = model_dir, timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.started_s = float("nan")

    def __enter__(self) -> AppServer:
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        env = {**os.environ, "RADTRIAGE_MODEL_DIR": str(self.model_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address", "127.0.0.1",
               "--server.port", str(self.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        t0 = time.perf_counter()
        # stderr to a file, not a pipe: nothing reads a pipe while the server runs, and a full one would block it
        import tempfile

        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._stderr)
        while time.perf_counter() - t0 < self.timeout_s:
            if self.proc.poll() is not None:
                self._stderr.seek(0)
                raise RuntimeError(f"streamlit exited: {self._stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        self.started_s = time.perf_counter() - t0
                        return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TimeoutError(f"streamlit did not answer within {self.timeout_s} s")

    def rss_mb(self) -> float:
        """Resident memory of the server process in MB (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kb / 1024

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()


def launch_chromium(playwright):
    """Debian's chromium through Playwright (Playwright never downloads a browser here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def wait_until_idle(page, timeout_ms: int = 120_000, quiet_ms: int = 1_000) -> None:
    """Wait for the script run to finish: Streamlit's status widget ("Running...") has detached and
    stayed away for ``quiet_ms`` (a rerun may start just after one ends)."""
    status = page.locator('[data-testid="stStatusWidget"]')
    quiet = 0
    for _ in range(timeout_ms // 100):
        if status.count():
            status.first.wait_for(state="detached", timeout=timeout_ms)
            quiet = 0
        else:
            quiet += 100
            if quiet >= quiet_ms:
                return
        page.wait_for_timeout(100)
    raise TimeoutError("the app kept running")
