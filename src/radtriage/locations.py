"""Where radtriage finds its default model folder and bundled examples (a setting, not a guess).

``$RADTRIAGE_MODEL_DIR`` and ``$RADTRIAGE_EXAMPLES_DIR`` win; otherwise the ``model/`` and
``app_images/`` folders of the radtriage checkout found by :func:`project_root`. The CLI, the dashboard
and the reference-prediction check all ask here.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_DIR_ENV = "RADTRIAGE_MODEL_DIR"
EXAMPLES_DIR_ENV = "RADTRIAGE_EXAMPLES_DIR"


def project_root() -> Path:
    """The radtriage checkout that holds the default model and example folders.

    The rule: the nearest folder at or above the working directory, else at or above this module's
    own file, that holds ``model/``, ``app_images/`` and a ``pyproject.toml`` naming the project
    radtriage. The working directory covers the scripts, the CLI run from the repository, the tests
    and Streamlit Community Cloud (which runs app.py from the repository root); this module's file
    covers an editable install run from any folder, and app.py run from elsewhere (it imports the
    package from the ``src/`` beside it). Where neither finds one (an installed wheel run outside a
    checkout): the working directory, so a missing folder is reported where the user stands.
    """
    import tomllib

    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if not ((folder / "model").is_dir() and (folder / "app_images").is_dir()):
                continue
            try:
                text = (folder / "pyproject.toml").read_text(encoding="utf-8")
                name = tomllib.loads(text)["project"]["name"]
            except (OSError, ValueError, KeyError, TypeError):  # absent, unreadable or not a project
                continue
            if name == "radtriage":
                return folder
    return Path.cwd()


def model_dir() -> Path:
    """The folder holding ``<name>/model.h5``: ``$RADTRIAGE_MODEL_DIR`` if set, else ``model/`` of
    the radtriage checkout found from the working directory or this package (see :func:`project_root`)."""
    return Path(os.environ.get(MODEL_DIR_ENV) or project_root() / "model")


def examples_dir() -> Path:
    """The bundled examples: ``$RADTRIAGE_EXAMPLES_DIR`` if set, else ``app_images/`` of the radtriage
    checkout found from the working directory or this package (see :func:`project_root`)."""
    return Path(os.environ.get(EXAMPLES_DIR_ENV) or project_root() / "app_images")
