"""Print the "Model x data" tables of BENCHMARKS.md from the shipped models' metadata (never typed by hand).

Usage: .venv/bin/python bench/model_tables.py [model_dir ...]   (default: model/chest model/mura model/anatomy)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ci(row: dict, key: str = "auroc") -> str:
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    return f"{fmt(row.get(key))} [{fmt(lo)}, {fmt(hi)}]" if lo is not None else fmt(row.get(key))


def class_table(meta: dict, role: str) -> list[str]:
    m = meta["metrics"][role]
    lines = [f"Split: {m['split']}.", "",
             "| class | positives / images | AUROC [95 % CI] | sensitivity | specificity | flagged by the model |",
             "|---|---|---|---|---|---|"]
    for r in m["per_class"]:
        if r.get("auroc") is None:
            continue
        sens, spec = r.get("sensitivity"), r.get("specificity")
        lines.append(f"| {r['class']} | {r.get('n_pos')} / {r.get('n')} | {ci(r)} | {fmt(sens, 2)} | {fmt(spec, 2)} | "
                     f"{'yes' if meta['flaggable'].get(r['class']) else 'never (interval includes 0.5)'} |")
    macro = m.get("macro_auroc") or {}
    lines.append(f"| **macro ({macro.get('n_classes')} classes)** | | **{fmt(macro.get('auroc'))} "
                 f"[{fmt(macro.get('lo'))}, {fmt(macro.get('hi'))}]** | | | |")
    return lines


def study_table(meta: dict, role: str) -> list[str]:
    m = meta["metrics"][role]
    lines = ["| group | images | abnormal | accuracy | AUROC | Cohen's kappa [95 % CI] |", "|---|---|---|---|---|---|"]
    for r in m.get("study_level", []):
        lines.append(f"| {r['group']} | {r['n']} | {r['n_pos']} | {fmt(r.get('accuracy'))} | {fmt(r.get('auroc'))} | "
                     f"{ci(r, 'kappa')} |")
    return lines


def gate_tables(meta: dict) -> str:
    """The anatomy gate's held-out figures: the sections of its card from the confusion matrix on."""
    from radtriage.runs.anatomy import gate_card

    card = gate_card(meta)
    return card[card.index("## Held-out"):card.index("## Serving")].replace("## ", "#### ")


def main(dirs: list[str]) -> None:
    for d in dirs or ["model/chest", "model/mura", "model/anatomy"]:
        meta = json.loads((ROOT / d / "metadata.json").read_text())
        if meta.get("kind") == "anatomy gate":
            print(f"### {meta['name']} ({d})\n")
            print(gate_tables(meta))
            continue
        training = meta["training_data"]
        print(f"### {meta['name']} ({d})\n")
        print(training.get("data_statement", ""), "\n")
        for role in ("test", "validation"):
            if role in meta["metrics"]:
                print(f"**{role}**\n")
                print("\n".join(class_table(meta, role)))
                if meta["metrics"][role].get("study_level"):
                    print()
                    print("\n".join(study_table(meta, role)))
                print()
        rates = training.get("validation_flag_rates")
        if rates:
            print("Flags on the validation images: " + "; ".join(f"{k}: {v}" for k, v in rates.items()) + ".\n")
        ood = meta.get("ood") or {}
        if ood:
            print(f"Out-of-distribution refusal: threshold set on {ood['threshold_set_on']}; refused: "
                  + "; ".join(f"{k}: {v}" for k, v in ood["refused"].items()) + ".\n")
        backbone = training.get("backbone", {})
        print(f"Backbone: {json.dumps({k: v for k, v in backbone.items() if k != 'weights'})}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
