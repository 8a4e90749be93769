"""Benchmark of distillation at the library's defaults: teachers -> compressed students.

Every dataset of both groups (``_common.TUNING_GROUP``: defaults may be chosen there;
``_common.SEALED_GROUP``: for reporting only) gets, in one run:

- the teacher: ``nnkd.teachers.train_mlp_teacher`` with one recipe for every dataset
  (``TEACHER``), its test accuracy and size;
- without a teacher: 1-NN on all training rows, and ``MarginCondensedNN()`` at its defaults;
- ``NNDistiller(teacher, space=..., size_budget_kb=B)`` at its defaults (nothing else set):
  ``space="input"`` and ``"projection"`` at 64 kB, ``"projection"`` at 32 kB: test accuracy,
  fidelity, size, the recipe it chose, its bound and the bound's kind, fit time;
- ProtoNN's published figures (Gupta et al., ICML 2017, Table 2) where it reports the dataset.

No per-dataset setting exists in this script. Writes ``benchmarks/results/distill.{json,md}``.
Usage: ``python benchmarks/distill.py [--datasets letter,usps] [--threads 2]``. The earlier
per-dataset recipes (``distill_tuned_*``) stay in the results folder as the labelled "tuned"
tables they were.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from _common import (
    DATASETS,
    DEFAULT_DATA_DIR,
    DEFAULT_OUT_DIR,
    DEFAULT_THREADS,
    SEALED_GROUP,
    TUNING_GROUP,
    Dataset,
    json_safe,
    load_dataset,
    log,
    machine_meta,
    markdown_table,
)
from sklearn.neighbors import KNeighborsClassifier

from nnkd.distill import NNDistiller
from nnkd.neighbors import MarginCondensedNN
from nnkd.teachers import train_mlp_teacher

BENCH_DATASETS = TUNING_GROUP + SEALED_GROUP
#: (space, budget kB) of the default students.
STUDENTS = (("input", 64), ("projection", 64), ("projection", 32))
#: ProtoNN (Gupta et al., ICML 2017), Table 2: (test accuracy %, model size kB), float32 parameters
PROTONN = {"letter": (97.10, 63.4), "usps": (94.92, 63.8)}
#: One teacher recipe for every dataset: the trees benchmark's (dropout and input noise), wider.
TEACHER = {"hidden": (512, 512), "epochs": 60, "batch_size": 128, "lr": 2e-3, "dropout": 0.2, "input_noise": 0.3}


def group_of(name: str) -> str:
    return "tuning" if name in TUNING_GROUP else "sealed"


def bench_dataset(data: Dataset, threads: int) -> list[dict[str, Any]]:
    info = {**data.info(), "group": group_of(data.spec.name)}
    X, y, Q, yq = data.X_train, data.y_train, data.X_test, data.y_test
    X, Q = X.astype(np.float32), Q.astype(np.float32)
    rows = []
    start = time.perf_counter()
    teacher = train_mlp_teacher(X, y, random_state=0, **TEACHER)
    teacher_pred = teacher.logits(Q).argmax(1)
    n_params = sum(p.numel() for p in teacher.model.parameters())
    rows.append({**info, "model": f"teacher MLP {TEACHER['hidden']}", "accuracy": float(np.mean(teacher_pred == yq)),
                 "fidelity": 1.0, "size_kb": 4 * n_params / 1000, "fit_s": time.perf_counter() - start})
    log(f"  teacher {100 * rows[-1]['accuracy']:.2f}%")
    rows.append({**info, "model": "1-NN, all rows (no teacher)",
                 "accuracy": float(KNeighborsClassifier(n_neighbors=1).fit(X, y).score(Q, yq)),
                 "size_kb": 4 * X.size / 1000})
    start = time.perf_counter()
    clf = MarginCondensedNN(random_state=0, n_jobs=threads).fit(X, y)
    rows.append({**info, "model": "MarginCondensedNN() (no teacher)", "accuracy": float(clf.score(Q, yq)),
                 "fidelity": float(np.mean(clf.predict(Q) == teacher_pred)), "prototypes": len(clf.support_),
                 "size_kb": 4 * clf.prototypes_.size / 1000, "bound": clf.bound_, "bound_kind": "compression",
                 "bound_vacuous": clf.bound_vacuous_, "selection": clf.selection_,
                 "fit_s": time.perf_counter() - start})
    log(f"  condensed {100 * rows[-1]['accuracy']:.2f}% ({clf.selection_})")
    for space, budget in STUDENTS:
        name = f"NNDistiller {space} {budget} kB"
        start = time.perf_counter()
        try:
            dist = NNDistiller(teacher, space=space, size_budget_kb=budget, random_state=0, n_jobs=threads).fit(X, y)
        except ValueError as exc:                    # e.g. a budget too small for this width
            rows.append({**info, "model": name, "error": str(exc)})
            continue
        recipe = None if dist.recipe_ is None else {k: v for k, v in dist.recipe_.items() if k != "candidates"}
        rows.append({**info, "model": name, "space": space, "budget_kb": budget, "dtype": dist.student_.dtype,
                     "accuracy": float(dist.score(Q, yq)), "fidelity": dist.fidelity(Q),
                     "prototypes": len(dist.prototypes_), "size_kb": dist.size_bytes_ / 1000,
                     "bound": dist.bound_, "bound_kind": dist.bound_kind_, "bound_target": dist.bound_target_,
                     "bound_vacuous": dist.bound_vacuous_, "recipe": recipe,
                     "candidates": None if dist.recipe_ is None else dist.recipe_["candidates"],
                     "fit_s": time.perf_counter() - start})
        log(f"  {name}: {100 * rows[-1]['accuracy']:.2f}% at {rows[-1]['size_kb']:.1f} kB "
            f"({rows[-1]['fit_s']:.0f} s)")
    if data.spec.name in PROTONN:
        acc, kb = PROTONN[data.spec.name]
        rows.append({**info, "model": "ProtoNN (published, Gupta et al. 2017)", "accuracy": acc / 100, "size_kb": kb,
                     "published": True})
    return rows


def _bound(r: dict) -> str:
    if r.get("bound") is None:
        return "–"
    kind = {"compression": "compr.", "held-out": "held-out"}.get(r.get("bound_kind"), "?")
    return f"{kind} vacuous" if r.get("bound_vacuous") else f"{kind} {r['bound']:.3f}"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per dataset: the best student that predicts without the teacher at <= 64 kB against
    the teacher, and the group means."""
    body, gaps = [], {"tuning": [], "sealed": []}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        dr = [r for r in rows if r["dataset"] == ds and "error" not in r]
        teacher = next(r for r in dr if r["model"].startswith("teacher"))
        nn1 = next(r for r in dr if r["model"].startswith("1-NN"))
        cond = next(r for r in dr if r["model"].startswith("MarginCondensedNN"))
        free = [r for r in dr if r.get("space") in ("input", "projection") and r["size_kb"] <= 64]
        if not free:
            continue
        best = max(free, key=lambda r: r["accuracy"])
        gap = 100 * (teacher["accuracy"] - best["accuracy"])
        gaps[dr[0]["group"]].append(gap)
        body.append([ds, dr[0]["group"], f"{100 * teacher['accuracy']:.2f}", best["model"], best["dtype"],
                     f"{100 * best['accuracy']:.2f}", f"{gap:+.2f}", f"{best['size_kb']:.1f}", _bound(best),
                     f"{100 * (1 - best['accuracy']):.2f}",
                     f"{100 * cond['accuracy']:.2f} ({cond['selection']})",
                     f"{100 * (nn1['accuracy'] - cond['accuracy']):+.2f}"])
    means = [f"{group}: mean teacher - student {np.mean(g):+.2f} points over {len(g)} datasets, largest "
             f"{max(g):+.2f}" for group, g in gaps.items() if g]
    return ["## Summary: best student without the teacher at <= 64 kB, defaults only", "",
            *markdown_table(["dataset", "group", "teacher %", "student", "dtype", "acc %", "teacher - student",
                             "size kB", "bound", "test error %", "MarginCondensedNN() %", "1-NN - condensed"],
                            body), "", *[f"- {m}" for m in means], ""]


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = ["# Distillation benchmark at the defaults: teachers into compressed students", "",
           f"Run {meta['date']} on {meta['machine']['platform']} ({meta['machine']['cpus_available']} CPUs); "
           f"nnkd {meta['versions'].get('nnkd')}, torch {meta['versions'].get('torch')}. Generated by "
           "`benchmarks/distill.py`; raw numbers (and every recipe candidate with its held-out fidelity) in "
           f"`distill.json`. One teacher recipe for all datasets: `train_mlp_teacher` {TEACHER}. Students are "
           "`NNDistiller(teacher, space=..., size_budget_kb=...)` and `MarginCondensedNN()` with nothing else set; "
           "what `fit` chose on its held-out rows is in the recipe column. Size counts every parameter prediction "
           "needs at its storage type (int8 scales included). Fidelity: top-1 agreement with the teacher on the "
           "test rows. Bounds hold with probability 0.95: *compr.* is the compression bound on the training "
           "sample, *held-out* the Clopper-Pearson bound on the fit's held-out rows (union over every recipe and "
           "checkpoint it could return); *vacuous*: >= 1. Groups: defaults may be chosen on *tuning* datasets "
           "only; *sealed* ones are for reporting. ProtoNN rows are the published figures (float32), not re-run.",
           ""]
    out += summary(rows)
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        dr = [r for r in rows if r["dataset"] == ds]
        out += [f"## {ds} ({dr[0]['group']})", "", f"{dr[0]['n_train']:,} train / {dr[0]['n_test']:,} test, "
                f"{dr[0]['n_features']} features, {dr[0]['n_classes']} classes; {dr[0]['split']}.", ""]
        body = []
        for r in dr:
            if "error" in r:
                body.append([r["model"], "–", "–", "–", "–", "–", "–", r["error"][:60]])
                continue
            rec = r.get("recipe")
            recipe = "–" if not rec else (f"{rec['dtype']}, k={rec['projection_dim']}, T={rec['temperature']:g}, "
                                          f"noise={rec['noise_scale']}, {rec['epochs']}/{rec['max_epochs']} ep")
            body.append([r["model"], f"{100 * r['accuracy']:.2f}",
                         "–" if r.get("fidelity") is None else f"{r['fidelity']:.3f}",
                         str(r.get("prototypes", "–")), f"{r['size_kb']:.1f}", _bound(r), recipe,
                         "–" if r.get("fit_s") is None else f"{r['fit_s']:.1f}"])
        out += markdown_table(["model", "test acc %", "fidelity", "prototypes", "size kB", "bound", "recipe",
                               "fit s"], body)
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(BENCH_DATASETS))
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    meta = {**machine_meta(args.threads), "teacher": TEACHER}
    rows: list[dict[str, Any]] = []
    from pathlib import Path
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [n for n in args.datasets.split(",") if n]:
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
        data = load_dataset(DATASETS[name], Path(args.data_dir))
        log(f"{name}: {data.X_train.shape}")
        rows += bench_dataset(data, args.threads)
        (out_dir / "distill.json").write_text(json.dumps(json_safe({"meta": meta, "rows": rows}), indent=2) + "\n")
        (out_dir / "distill.md").write_text(render(rows, meta))
    log(f"wrote {out_dir / 'distill.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
