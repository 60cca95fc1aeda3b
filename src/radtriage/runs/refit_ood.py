"""Re-fit the out-of-distribution score of a model the pretrained recipe made, without retraining it::

    python -m radtriage.runs.refit_ood model/chest/run_config.json model/mura/run_config.json

The run config re-creates the model's splits (from the prepare cache); the model's features of them
go to :func:`radtriage.runs.ood.fit_pretrained_ood`; the LiteRT copy is exported again so that it
carries the features, and the card's out-of-distribution section is rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from radtriage.artifact import read_metadata
from radtriage.runs.ood import fit_pretrained_ood, model_features


def refit_from_config(config_path: str | Path) -> dict[str, Any]:
    """Re-fit the OOD score of the model a pretrained-recipe run config made, then re-export and re-card it."""
    from radtriage.artifact import load_artifact
    from radtriage.export import export_litert
    from radtriage.model_card import CARD_FILE, set_ood_section
    from radtriage.prepare import load_cached, prepare
    from radtriage.preprocess import PreprocessConfig
    from radtriage.runs import pretrained
    from radtriage.runs.sources import drop_failed

    run = pretrained.PretrainedRunConfig(**json.loads(Path(config_path).read_text()))
    config = PreprocessConfig(size=run.backbone_config().size)
    parts, _, _ = pretrained._tables(run)
    import pandas as pd

    index = prepare(pd.concat(parts.values(), ignore_index=True), config, run.cache_dir, run.workers, run.progress)
    parts = {n: drop_failed(p, index) for n, p in parts.items()}
    model_dir = Path(run.model_dir or f"model/{run.task}")
    model = load_artifact(model_dir).model
    feats = {n: model_features(model, load_cached(index, p["image_id"].tolist())) for n, p in parts.items()}
    record = fit_pretrained_ood(model_dir, run.task, parts, feats)
    export_litert(model_dir)
    if (model_dir / CARD_FILE).is_file():
        set_ood_section(model_dir / CARD_FILE, read_metadata(model_dir).to_dict())
    return record


def main(argv: list[str] | None = None) -> int:
    for path in argv if argv is not None else sys.argv[1:]:
        record = refit_from_config(path)
        print(f"{path}: threshold {record['threshold']}; refused {record['refused']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
