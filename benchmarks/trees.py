"""Benchmark of soft decision trees and data-free distillation at the defaults, in one run.

For every dataset of both groups (``_common.TUNING_GROUP``, ``_common.SEALED_GROUP``):

- the teacher: ``nnkd.teachers.train_mlp_teacher`` with one recipe for all datasets
  (``_common.DEFAULT_TEACHER``), its test accuracy;
- soft decision trees (Frosst & Hinton 2017) of depth 6 and 8 at the tree's defaults, fitted
  to the hard labels (``SoftDecisionTreeClassifier.fit(X, y)``) and distilled from the teacher
  by ``TreeDistiller(teacher, tree=...)`` at its defaults (it chooses temperature and label
  mixing on held-out rows, and falls back to the labels where the teacher does not help),
  over several seeds: test accuracy (``inference="max_path"``; the mixture beside it),
  fidelity, the recipe chosen, the held-out bound, and the gain;
- data-free distillation (Nayak et al. 2019) on ``FREE_DATASETS``: data impressions
  synthesised from the teacher alone, the input range clamped to each feature's training
  range, then the same ``NNDistiller`` student fitted on the impressions and on the real
  training rows; a depth-8 tree distilled from the impressions beside them.

No per-dataset setting exists in this script. Writes ``benchmarks/results/trees.{json,md}``.
Usage: ``python benchmarks/trees.py [--datasets optdigits,usps] [--seeds 2] [--quick]``
(``--quick``: one seed, few epochs, a few impressions; a smoke test, not a result).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA_DIR,  # noqa: I001 - must come before numpy: it pins thread counts
    DEFAULT_OUT_DIR, DEFAULT_TEACHER, check_data, log, machine_meta)
import numpy as np

from nnkd.bench import DATASETS, SEALED_GROUP, SplitDataset, TUNING_GROUP, json_safe, load_split, markdown_table
from nnkd.distill import DataImpressions, DirichletMixup, NNDistiller, TreeDistiller
from nnkd.teachers import train_mlp_teacher
from nnkd.trees import SoftDecisionTreeClassifier

BENCH_DATASETS = TUNING_GROUP + SEALED_GROUP
#: The data-free comparison costs minutes per dataset (impressions are optimised through the
#: teacher): two of each group by default.
FREE_DATASETS = ("pendigits", "usps", "optdigits", "mnist_test")
DEPTHS = (6, 8)
#: Shared by the hard-label and the distilled trees: the tree's own defaults, seeded.
TREE: dict[str, Any] = {}
#: The student distilled from impressions and from real rows (the same settings for both).
STUDENT = {"space": "projection", "size_budget_kb": 64, "augment": DirichletMixup(8), "max_epochs": 30}
IMPRESSIONS = {"n_per_class": 1000, "betas": (1.0, 0.1), "temperature": 20.0, "steps": 300, "lr": 0.05}
QUICK = {"seeds": 1, "depths": (6,), "tree_epochs": 3, "student_epochs": 3, "n_per_class": 20, "steps": 20}


def accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(pred == truth))


def tree_rows(data: SplitDataset, teacher, teacher_pred: np.ndarray, depths, seeds: int, tree_kw: dict,
              distill_kw: dict | None = None, labels_from=("hard", "teacher")) -> list[dict]:
    """Hard-label and/or distilled trees of each depth, one row per (depth, labels, seed)."""
    X, y, Q, yq = data.X_train, data.y_train, data.X_test, data.y_test
    rows = []
    for depth in depths:
        for seed in range(seeds):
            tree = SoftDecisionTreeClassifier(depth=depth, random_state=seed, **tree_kw)
            for labels in labels_from:
                start = time.perf_counter()
                est = (tree.fit(X, y) if labels == "hard"
                       else TreeDistiller(teacher, tree=tree, **(distill_kw or {})).fit(X, y))
                fit_s = time.perf_counter() - start
                pred = est.predict(Q)
                mixture = dataclasses.replace(est.student_, inference="mixture").predict(Q)
                rows.append({"depth": depth, "labels": labels, "seed": seed, "accuracy": accuracy(pred, yq),
                             "accuracy_mixture": accuracy(mixture, yq), "fidelity": accuracy(pred, teacher_pred),
                             "train_accuracy": accuracy(est.predict(X), y), "size_kb": est.student_.size_bytes / 1000,
                             "fit_s": fit_s, "recipe": getattr(est, "recipe_", None),
                             "fell_back": getattr(est, "fell_back_to_labels_", None),
                             "bound": getattr(est, "bound_", None)})
                log(f"  depth {depth} {labels} seed {seed}: {100 * rows[-1]['accuracy']:.2f}% ({fit_s:.0f} s)")
    return rows


def data_free_rows(data: SplitDataset, teacher, impressions_kw: dict, student_kw: dict, tree_kw: dict) -> list[dict]:
    """The same student distilled on real rows and on data impressions only (+ a tree on them)."""
    X, Q, yq = data.X_train, data.X_test, data.y_test
    start = time.perf_counter()
    # What a user without the data may still know: each feature's range (here read off the
    # training rows: two numbers per feature).
    di = DataImpressions(teacher, input_range=(X.min(axis=0), X.max(axis=0)), random_state=0, **impressions_kw)
    Xi, Yi = di.generate()
    gen_s = time.perf_counter() - start
    teacher_on_impressions = teacher.logits(Xi).argmax(1)
    info = {"n_impressions": int(Xi.shape[0]), "generate_s": gen_s,
            "impressions_classes": np.bincount(teacher_on_impressions, minlength=Yi.shape[1]).tolist(),
            "target_agreement": di.target_agreement_,
            "impressions": {k: list(v) if isinstance(v, tuple) else v for k, v in impressions_kw.items()}}
    log(f"  {Xi.shape[0]} impressions in {gen_s:.0f} s; teacher argmax = target argmax on "
        f"{100 * info['target_agreement']:.1f}%")
    rows = []
    for transfer, rows_X in (("real rows", X), ("impressions", Xi)):
        start = time.perf_counter()
        student = NNDistiller(teacher, random_state=0, **student_kw).fit(rows_X)
        rows.append({"model": f"NNDistiller {student_kw['space']} {student_kw['size_budget_kb']} kB",
                     "transfer": transfer, "accuracy": float(student.score(Q, yq)), "fidelity": student.fidelity(Q),
                     "size_kb": student.size_bytes_ / 1000, "fit_s": time.perf_counter() - start, **info})
        log(f"  student on {transfer}: {100 * rows[-1]['accuracy']:.2f}%")
    start = time.perf_counter()
    tree = TreeDistiller(teacher, tree=SoftDecisionTreeClassifier(depth=max(DEPTHS), random_state=0, **tree_kw)
                         ).fit(Xi)                       # defaults; impressions have no true labels
    rows.append({"model": f"soft tree depth {max(DEPTHS)}", "transfer": "impressions",
                 "accuracy": float(tree.score(Q, yq)), "fidelity": tree.fidelity(Q),
                 "size_kb": tree.size_bytes_ / 1000, "fit_s": time.perf_counter() - start, **info})
    log(f"  tree on impressions: {100 * rows[-1]['accuracy']:.2f}%")
    return rows


def summarise(trees: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (depth, labels), and each depth's gain."""
    out = []
    for depth in sorted({r["depth"] for r in trees}):
        entry: dict[str, Any] = {"depth": depth}
        for labels in ("hard", "teacher"):
            rs = [r for r in trees if r["depth"] == depth and r["labels"] == labels]
            for key in ("accuracy", "accuracy_mixture", "fidelity", "train_accuracy"):
                values = np.array([r[key] for r in rs])
                entry[f"{labels}_{key}"] = float(values.mean())
                entry[f"{labels}_{key}_std"] = float(values.std())
            entry["size_kb"] = rs[0]["size_kb"]
            if labels == "teacher":
                entry["fell_back"] = sum(bool(r["fell_back"]) for r in rs)
                entry["sources"] = sorted({(r["recipe"] or {}).get("source", "?") + (
                    "" if (r["recipe"] or {}).get("source") != "teacher" else
                    f" T={r['recipe']['temperature']:g} a={r['recipe']['alpha']:g}") for r in rs})
                entry["bound"] = float(np.mean([r["bound"] for r in rs if r["bound"] is not None] or [np.nan]))
        entry["gain_points"] = 100 * (entry["teacher_accuracy"] - entry["hard_accuracy"])
        out.append(entry)
    return out


def render(results: list[dict], meta: dict) -> str:
    out = ["# Soft decision trees and data-free distillation, at the defaults", "",
           f"Run {meta['date']} on {meta['machine']['platform']} ({meta['machine']['cpus_available']} CPUs); "
           f"nnkd {meta['versions'].get('nnkd')}, torch {meta['versions'].get('torch')}. Generated by "
           "`benchmarks/trees.py`" + (" --quick (smoke test: not a result)" if meta["quick"] else "")
           + "; raw numbers in `trees.json`.", "",
           f"One teacher recipe for every dataset: `train_mlp_teacher` {meta['teacher']}. Trees: "
           f"`SoftDecisionTreeClassifier(depth=d, random_state=seed)` (its defaults), mean ± standard deviation "
           f"over {meta['seeds']} seed(s); accuracy with `inference=\"max_path\"` (mixture in the JSON). *hard*: "
           "the tree fitted to all training labels; *distilled*: `TreeDistiller(teacher, tree=...)` at its "
           "defaults, which holds out 10 % of the training rows, fits the labels-only tree and the teacher "
           "recipes (temperature, label mixing) on the rest, and keeps the most accurate on the held-out rows "
           "(*fell back*: how many seeds kept the labels-only tree). Gain: distilled minus hard, in points. "
           "Bound: the distilled tree's held-out bound on its error (probability 0.95, union over its "
           "candidates), mean over seeds. Datasets: defaults may be chosen on the *tuning* group only "
           f"({', '.join(TUNING_GROUP)}); the *sealed* group is for reporting.", "",
           f"Data-free: `DataImpressions` {meta['impressions']}, inputs clamped to each feature's training range; "
           f"student `NNDistiller` {meta['student']} fitted on the impressions only vs on the real training rows. "
           "Ratio: data-free accuracy / real-data accuracy.", ""]
    body = []
    for res in results:
        for s in res["tree_summary"]:
            body.append([res["dataset"], "tuning" if res["dataset"] in TUNING_GROUP else "sealed",
                         f"{100 * res['teacher_accuracy']:.2f}", str(s["depth"]),
                         f"{100 * s['hard_accuracy']:.2f} ± {100 * s['hard_accuracy_std']:.2f}",
                         f"{100 * s['teacher_accuracy']:.2f} ± {100 * s['teacher_accuracy_std']:.2f}",
                         f"{s['gain_points']:+.2f}", "; ".join(s["sources"]), str(s["fell_back"]),
                         f"{s['bound']:.3f}", f"{s['teacher_fidelity']:.3f}", f"{s['size_kb']:.1f}"])
    out += ["## Soft trees: hard labels vs distilled", ""]
    out += markdown_table(["dataset", "group", "teacher %", "depth", "hard %", "distilled %", "gain", "chosen",
                           "fell back", "bound", "fidelity (distilled)", "size kB"], body)
    out.append("")
    body = []
    for res in results:
        free = res["data_free"]
        if not free:
            continue
        real = next(r for r in free if r["transfer"] == "real rows")
        imp = next(r for r in free if r["transfer"] == "impressions" and r["model"] == real["model"])
        tree = next(r for r in free if r["model"].startswith("soft tree"))
        body.append([res["dataset"], f"{100 * res['teacher_accuracy']:.2f}", real["model"],
                     f"{100 * real['accuracy']:.2f}", f"{100 * imp['accuracy']:.2f}",
                     f"{imp['accuracy'] / real['accuracy']:.3f}", f"{100 * tree['accuracy']:.2f}",
                     str(imp["n_impressions"]), f"{imp['target_agreement']:.3f}", f"{imp['generate_s']:.0f}"])
    out += ["## Data-free: the same student from data impressions vs from real rows", ""]
    out += markdown_table(["dataset", "teacher %", "student", "real rows %", "impressions only %", "ratio",
                           "tree from impressions %", "impressions", "target agreement", "generate s"], body)
    out += ["", "Target agreement: share of impressions on which the teacher's class is the sampled target's most "
            "probable class."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(BENCH_DATASETS))
    parser.add_argument("--free-datasets", default=",".join(FREE_DATASETS),
                        help="datasets that also get the data-free comparison")
    parser.add_argument("--seeds", type=int, default=2, help="tree seeds per depth and label source")
    parser.add_argument("--quick", action="store_true", help="smoke test: one seed, a few epochs and impressions")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    tree_kw, student_kw, impressions_kw = dict(TREE), dict(STUDENT), dict(IMPRESSIONS)
    seeds, depths = args.seeds, DEPTHS
    teacher_kw = dict(DEFAULT_TEACHER)
    if args.quick:
        seeds, depths = QUICK["seeds"], QUICK["depths"]
        tree_kw["max_epochs"], student_kw["max_epochs"] = QUICK["tree_epochs"], QUICK["student_epochs"]
        impressions_kw.update(n_per_class=QUICK["n_per_class"], steps=QUICK["steps"])
        teacher_kw["epochs"] = 5
    meta = {**machine_meta(args.threads), "quick": args.quick, "seeds": seeds, "teacher": teacher_kw,
            "tree": tree_kw, "student": {k: v if isinstance(v, (int, float, str)) else repr(v)
                                         for k, v in student_kw.items()},
            "impressions": impressions_kw}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    free_sets = {n for n in args.free_datasets.split(",") if n}
    results = []
    for name in check_data([n for n in args.datasets.split(",") if n], Path(args.data_dir)):
        data = load_split(DATASETS[name], Path(args.data_dir))
        log(f"{name}: {data.X_train.shape} train, {data.X_test.shape[0]} test")
        start = time.perf_counter()
        data = dataclasses.replace(data, X_train=data.X_train.astype(np.float32), X_test=data.X_test.astype(np.float32))
        teacher = train_mlp_teacher(data.X_train, data.y_train, random_state=0, **teacher_kw)
        teacher_pred = teacher.logits(data.X_test).argmax(1)
        res = {**data.info(), "teacher_accuracy": accuracy(teacher_pred, data.y_test),
               "teacher_fit_s": time.perf_counter() - start}
        log(f"  teacher {100 * res['teacher_accuracy']:.2f}%")
        res["trees"] = tree_rows(data, teacher, teacher_pred, depths, seeds, tree_kw)
        res["tree_summary"] = summarise(res["trees"])
        res["data_free"] = (data_free_rows(data, teacher, impressions_kw, student_kw, tree_kw)
                            if name in free_sets else [])
        results.append(res)
        (out_dir / "trees.json").write_text(json.dumps(json_safe({"meta": meta, "results": results}), indent=2) + "\n")
        (out_dir / "trees.md").write_text(render(results, meta))
    log(f"wrote {out_dir / 'trees.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
