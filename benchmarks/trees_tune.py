"""Choose how ``benchmarks/trees.py`` distils each dataset's teacher into the trees, on a
validation split (the test rows are never read).

For each dataset the training rows are split 75 / 25 (stratified, ``random_state=0``); a
teacher with ``trees.py``'s settings is trained on the 75 %, and soft decision trees of depth 6
and 8 are fitted there from the hard labels and with each candidate ``TreeDistiller`` setting:

- ``trees.py``'s base setting for the dataset (teacher's soft labels at ``temperature=1`` plus
  perturbed copies labelled by the teacher);
- the same plus the true labels mixed into the targets of the training rows
  (``alpha`` in {0.5, 0.7}) with the teacher's labels at ``temperature`` in {4, 8}.

The candidate with the best validation accuracy, averaged over both depths and all seeds, is
the dataset's choice. Writes ``benchmarks/results/trees_tune.{json,md}``. Usage: ``python
benchmarks/trees_tune.py [--datasets optdigits,letter] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATASETS, DEFAULT_DATA_DIR, DEFAULT_OUT_DIR, json_safe, load_dataset, log, machine_meta, markdown_table
from sklearn.model_selection import train_test_split
from trees import DEPTHS, DISTILL, IMAGE_DATASETS, IMAGE_DISTILL, IMAGE_TEACHER, TEACHER, TREE, tree_rows

from nnkd.teachers import train_mlp_teacher

TUNE_DATASETS = ("optdigits", "pendigits", "letter")
ALPHAS = (0.5, 0.7)
TEMPERATURES = (4.0, 8.0)
VAL_SIZE = 0.25


def candidates(base: dict) -> list[dict]:
    """The base setting, then label mixing at each (alpha, temperature)."""
    return [dict(base)] + [{**base, "alpha": a, "temperature": t} for a in ALPHAS for t in TEMPERATURES]


def tune_dataset(name: str, data_dir: Path, seeds: int) -> dict:
    data = load_dataset(DATASETS[name], data_dir)
    X_fit, X_val, y_fit, y_val = train_test_split(data.X_train, data.y_train, test_size=VAL_SIZE,
                                                  stratify=data.y_train, random_state=0)
    split = dataclasses.replace(data, X_train=X_fit, y_train=y_fit, X_test=X_val, y_test=y_val)
    image = name in IMAGE_DATASETS
    teacher = train_mlp_teacher(X_fit, y_fit, **(IMAGE_TEACHER if image else TEACHER))
    teacher_pred = teacher.logits(X_val).argmax(1)
    res = {"dataset": name, "n_fit": len(y_fit), "n_val": len(y_val),
           "teacher_val_accuracy": float(np.mean(teacher_pred == y_val)), "rows": []}
    log(f"{name}: {len(y_fit)} fit / {len(y_val)} validation rows; teacher {100 * res['teacher_val_accuracy']:.2f}%")
    res["rows"] += [{**r, "candidate": None} for r in tree_rows(split, teacher, teacher_pred, DEPTHS, seeds, TREE, {},
                                                                labels_from=("hard",))]
    for i, kw in enumerate(candidates(IMAGE_DISTILL if image else DISTILL)):
        log(f"  candidate {i}: {kw}")
        res["rows"] += [{**r, "candidate": i} for r in tree_rows(split, teacher, teacher_pred, DEPTHS, seeds, TREE, kw,
                                                                 labels_from=("teacher",))]
    res["candidates"] = candidates(IMAGE_DISTILL if image else DISTILL)
    res["summary"] = summarise(res)
    res["chosen"] = max(range(len(res["candidates"])), key=lambda i: res["summary"][i]["mean_accuracy"])
    log(f"  chosen: candidate {res['chosen']} {res['candidates'][res['chosen']]}")
    return res


def summarise(res: dict) -> dict:
    """Per candidate (``None``: hard labels): mean validation accuracy per depth and overall."""
    out: dict = {}
    for cand in [None, *range(len(res["candidates"]))]:
        rows = [r for r in res["rows"] if r["candidate"] == cand]
        out[cand] = {"mean_accuracy": float(np.mean([r["accuracy"] for r in rows])),
                     **{f"depth_{d}": float(np.mean([r["accuracy"] for r in rows if r["depth"] == d])) for d in DEPTHS}}
    return out


def render(results: list[dict], meta: dict) -> str:
    out = ["# Choosing the tree distillation settings on a validation split", "",
           f"Run {', '.join(meta.get('merged_runs', [meta['date']]))} on {meta['machine']['platform']} "
           f"({meta['machine']['cpus_available']} CPUs"
           + (f"; {len(meta['merged_runs'])} runs side by side, merged" if "merged_runs" in meta else "") + "). Generated "
           "by `benchmarks/trees_tune.py`; raw numbers in `trees_tune.json`. Training rows split "
           f"{round(100 * (1 - VAL_SIZE))} / {round(100 * VAL_SIZE)} (stratified, random_state=0); teacher and trees "
           "fitted on the first part, accuracy on the second; the test rows are not read. Trees: "
           f"`SoftDecisionTreeClassifier` {TREE}, {meta['seeds']} seeds per depth; `inference=\"max_path\"`. "
           "Candidates differ from the dataset's base `TreeDistiller` setting (first row) only where shown.", ""]
    for res in results:
        base = res["candidates"][0]
        out += [f"## {res['dataset']} (teacher {100 * res['teacher_val_accuracy']:.2f} % on validation)", "",
                f"Base setting: {base}.", ""]
        header = ["labels", *[f"depth {d} %" for d in DEPTHS], "mean %", "gain over hard"]
        hard = res["summary"][None]
        body = [["hard", *[f"{100 * hard[f'depth_{d}']:.2f}" for d in DEPTHS], f"{100 * hard['mean_accuracy']:.2f}", ""]]
        for i, kw in enumerate(res["candidates"]):
            s = res["summary"][i]
            diff = {k: v for k, v in kw.items() if base.get(k) != v} or "base"
            mark = " **(chosen)**" if i == res["chosen"] else ""
            body.append([f"distilled {diff}{mark}", *[f"{100 * s[f'depth_{d}']:.2f}" for d in DEPTHS],
                         f"{100 * s['mean_accuracy']:.2f}", f"{100 * (s['mean_accuracy'] - hard['mean_accuracy']):+.2f}"])
        out += markdown_table(header, body) + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(TUNE_DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--tag", default="", help="suffix of the output files (trees_tune<tag>.json/.md)")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="only combine the results of earlier runs (e.g. run in parallel) into trees_tune.json/.md")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.merge:
        runs = [json.loads(Path(p).read_text()) for p in args.merge]
        results = [r for run in runs for r in run["results"]]
        for r in results:                           # JSON turned the summary's keys into strings
            r["summary"] = {None if k == "null" else int(k): v for k, v in r["summary"].items()}
        meta = {**runs[0]["meta"], "merged_runs": [run["meta"]["date"] for run in runs]}
        (out_dir / "trees_tune.json").write_text(json.dumps(json_safe({"meta": meta, "results": results}), indent=2) + "\n")
        (out_dir / "trees_tune.md").write_text(render(results, meta))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    meta = {**machine_meta(args.threads), "seeds": args.seeds, "tree": TREE, "val_size": VAL_SIZE}
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in [n for n in args.datasets.split(",") if n]:
        start = time.perf_counter()
        results.append(tune_dataset(name, Path(args.data_dir), args.seeds))
        results[-1]["seconds"] = time.perf_counter() - start
        stem = out_dir / f"trees_tune{args.tag}"
        stem.with_suffix(".json").write_text(json.dumps(json_safe({"meta": meta, "results": results}), indent=2) + "\n")
        stem.with_suffix(".md").write_text(render(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
