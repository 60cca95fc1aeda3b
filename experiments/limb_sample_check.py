"""What does a limb model call the real limb-sample images? (../shared/data/limb-sample, read only)

The 10 paediatric hands (normal, open growth plates) and the 3 MURA wrist images from positive
studies; the 7 MURA examples of unknown label are listed too. Usage:

    .venv/bin/python experiments/limb_sample_check.py model/mura
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd  # noqa: E402

from radtriage.runs.pretrained import shared_data  # noqa: E402
from radtriage.serving import load_predictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    args = ap.parse_args()
    root = shared_data() / "limb-sample"
    table = pd.read_csv(root / "labels.csv")
    predictor = load_predictor(args.model_dir, "keras")
    name = predictor.classes[0]
    rows = []
    for r in table.itertuples():
        p = predictor.predict(predictor.load_input(root / r.path)[1])
        group = "paediatric hand (normal)" if r.path.startswith("hands/") else (
            "MURA positive study" if r.label == 1 else "MURA example, label unknown")
        rows.append({"group": group, "file": Path(r.path).name, "p(abnormal)": round(p.probabilities[name], 3),
                     "flagged": p.flags[name]})
    out = pd.DataFrame(rows)
    print(out.to_string(index=False))
    print(out.groupby("group")["flagged"].agg(["sum", "count"]).rename(columns={"sum": "flagged", "count": "images"}))


if __name__ == "__main__":
    main()
