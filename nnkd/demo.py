"""The main job (``nnkd demo``): distil a PyTorch teacher trained on scikit-learn's digits
into compressed students in each space, and report accuracy, fidelity, size, bound and
latency next to the teacher and to condensing without a teacher."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

#: label -> NNDistiller parameters (size budgets in kB); everything else at its default, so
#: the projection students choose their recipe on held-out rows inside fit.
STUDENTS = {
    "student: input space, 16 kB": {"space": "input", "size_budget_kb": 16},
    "student: teacher space, 16 kB": {"space": "teacher", "size_budget_kb": 16},
    "student: projection, 16 kB": {"space": "projection", "size_budget_kb": 16},
    "student: projection, 8 kB": {"space": "projection", "size_budget_kb": 8},
}


def _latency_us(predict, X, repeats: int = 5) -> float:
    predict(X[:10])
    best = min(_timed(predict, X) for _ in range(repeats))
    return 1e6 * best / len(X)


def _timed(fn, X) -> float:
    start = time.perf_counter()
    fn(X)
    return time.perf_counter() - start


def run_demo(out_dir=None, *, random_state: int = 0, n_jobs=None, teacher_epochs: int = 40) -> dict:
    """Train the teacher, distil every student, and (with ``out_dir``) write ``demo.md``,
    ``demo.json``, ``accuracy_vs_size.png`` and ``prototypes.png``. Returns the report dict."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    from nnkd.distill._distiller import NNDistiller
    from nnkd.neighbors import MarginCondensedNN
    from nnkd.teachers import train_mlp_teacher

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=random_state)
    start = time.perf_counter()
    teacher = train_mlp_teacher(X_tr, y_tr, hidden=(128, 32), epochs=teacher_epochs, random_state=random_state)
    model = teacher.model
    teacher_acc = float(np.mean(teacher.logits(X_te).argmax(1) == y_te))
    teacher_params = sum(p.numel() for p in model.parameters())
    rows = [{"model": "teacher MLP (64-128-32-10)", "accuracy": teacher_acc, "fidelity": 1.0,
             "prototypes": None, "size_kb": 4 * teacher_params / 1000, "bound": None,
             "fit_s": time.perf_counter() - start,
             "latency_us": _latency_us(lambda Z: teacher.logits(Z), X_te)}]
    teacher_pred = teacher.logits(X_te).argmax(1)
    start = time.perf_counter()
    full = KNeighborsClassifier(n_neighbors=1).fit(X_tr, y_tr)
    rows.append({"model": "1-NN on all rows (no teacher)", "accuracy": float(full.score(X_te, y_te)),
                 "fidelity": float(np.mean(full.predict(X_te) == teacher_pred)), "prototypes": len(y_tr),
                 "size_kb": 4 * X_tr.size / 1000, "bound": None, "fit_s": time.perf_counter() - start,
                 "latency_us": _latency_us(full.predict, X_te)})
    start = time.perf_counter()
    ksu = MarginCondensedNN(random_state=random_state, n_jobs=n_jobs).fit(X_tr, y_tr)
    rows.append({"model": "MarginCondensedNN() (no teacher)", "accuracy": float(ksu.score(X_te, y_te)),
                 "fidelity": float(np.mean(ksu.predict(X_te) == teacher_pred)), "prototypes": len(ksu.support_),
                 "size_kb": 4 * ksu.prototypes_.size / 1000, "bound": ksu.bound_, "bound_kind": "compression",
                 "fit_s": time.perf_counter() - start, "latency_us": _latency_us(ksu.predict, X_te)})
    students = {}
    for label, params in STUDENTS.items():
        start = time.perf_counter()
        dist = NNDistiller(teacher, random_state=random_state, n_jobs=n_jobs, **params).fit(X_tr, y_tr)
        fit_s = time.perf_counter() - start
        students[label] = dist
        rows.append({"model": label, "accuracy": float(dist.score(X_te, y_te)), "fidelity": dist.fidelity(X_te),
                     "prototypes": len(dist.prototypes_), "size_kb": dist.size_bytes_ / 1000,
                     "dtype": dist.student_.dtype, "bound": dist.bound_, "bound_kind": dist.bound_kind_,
                     "fit_s": fit_s, "latency_us": _latency_us(dist.predict, X_te)})
    report = {"dataset": f"scikit-learn digits: {len(y_tr)} train / {len(y_te)} test rows, 64 features, 10 classes",
              "rows": rows}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "demo.json").write_text(json.dumps(report, indent=2))
        (out / "demo.md").write_text(format_markdown(report))
        _plots(out, rows, students["student: input space, 16 kB"])
        students["student: projection, 16 kB"].student_.save(out / "student")
        report["files"] = [str(out / n) for n in ("demo.md", "demo.json", "accuracy_vs_size.png",
                                                  "prototypes.png", "student")]
    return report


def format_table(report: dict) -> str:
    """Plain-text table of the demo rows."""
    lines = [f"{'model':<36} {'acc':>7} {'fidelity':>8} {'protos':>6} {'size kB':>8} {'bound':>16} "
             f"{'fit s':>6} {'us/row':>7}"]
    for r in report["rows"]:
        protos = "-" if r["prototypes"] is None else str(r["prototypes"])
        lines.append(f"{r['model']:<36} {100 * r['accuracy']:>6.2f}% {r['fidelity']:>8.3f} {protos:>6} "
                     f"{r['size_kb']:>8.1f} {_bound(r):>16} {r['fit_s']:>6.2f} {r['latency_us']:>7.1f}")
    return "\n".join(lines)


def summary_table(report: dict) -> str:
    """The demo's rows without their timings, as a Markdown table: what the README shows (the
    suite checks it against the committed run in ``benchmarks/results/demo/demo.json``)."""
    lines = ["| model | test acc % | fidelity | prototypes | size kB | bound |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        protos = "-" if r["prototypes"] is None else str(r["prototypes"])
        lines.append(f"| {r['model']} | {100 * r['accuracy']:.2f} | {r['fidelity']:.3f} | {protos} | "
                     f"{r['size_kb']:.1f} | {_bound(r)} |")
    return "\n".join(lines)


def _bound(row: dict) -> str:
    """``"held-out 0.081"``, ``"compression vacuous"`` (>= 1: certifies nothing) or ``"-"``."""
    if row.get("bound") is None:
        return "-"
    return f"{row.get('bound_kind')} " + ("vacuous" if row["bound"] >= 1 else f"{row['bound']:.3f}")


def format_markdown(report: dict) -> str:
    lines = ["# nnkd demo: a teacher distilled into compressed nearest-prototype students", "",
             report["dataset"] + ". Fidelity: top-1 agreement with the teacher on the test rows. Size: every "
             "parameter prediction needs, at the storage type the student chose. Bound (probability 0.95): "
             "*compression*, the sample-compression bound of a condensed set on the training rows; *held-out*, "
             "the Clopper-Pearson bound on rows the fit held out (union over every recipe it could return); "
             "*vacuous*: >= 1, it certifies nothing. Latency: predict over the test rows, per row.", "",
             "| model | test accuracy % | fidelity | prototypes | size kB | bound | fit s | latency us/row |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        protos = "-" if r["prototypes"] is None else str(r["prototypes"])
        lines.append(f"| {r['model']} | {100 * r['accuracy']:.2f} | {r['fidelity']:.3f} | {protos} | "
                     f"{r['size_kb']:.1f} | {_bound(r)} | {r['fit_s']:.2f} | {r['latency_us']:.1f} |")
    lines += ["", "![accuracy vs size](accuracy_vs_size.png)", "",
              "Prototypes of the input-space student (each is a training image; title: its label):", "",
              "![prototypes](prototypes.png)", ""]
    return "\n".join(lines)


def _plots(out: Path, rows: list[dict], input_student) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["size_kb"], 100 * r["accuracy"], s=40)
        ax.annotate(r["model"].replace("student: ", ""), (r["size_kb"], 100 * r["accuracy"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model size (kB, float32 parameters)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits: accuracy vs size")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_size.png", dpi=120)
    plt.close(fig)
    s = input_student.student_
    m = s.prototypes.shape[0]
    cols = min(12, m)
    rows_n = -(-m // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(cols * 0.8, rows_n * 0.95))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < m:
            ax.imshow(s.prototypes[i].reshape(8, 8), cmap="gray_r")
            ax.set_title(str(s.classes[int(np.argmax(s.label_vectors[i]))]), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "prototypes.png", dpi=100)
    plt.close(fig)
