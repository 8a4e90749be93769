"""What ``nnkd condense``, ``nnkd distill`` and ``nnkd predict`` do, as plain functions.

Each reads a user's data file (:mod:`nnkd._core.datafiles`), fits or loads a student,
writes its outputs and returns a JSON-serialisable summary (what the command prints).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from nnkd._core.datafiles import read_data
from nnkd._core.partitions import dask_client, is_dask_collection, read_rows_lazily

REPORT_FILE = "report.json"


def _holdout(n: int, y: np.ndarray | None, fraction: float, seed):
    """Training and validation row indices (stratified when labels allow it)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--validation-fraction {fraction} must be in [0, 1).")
    rows = np.arange(n)
    if fraction == 0.0:
        return rows, rows[:0]
    stratify = None
    if y is not None:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and int(fraction * n) >= len(counts):
            stratify = y
    train, val = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"--validation-fraction {fraction} leaves no training or no validation rows of {n}.")
    return np.sort(train), np.sort(val)


def _accuracy(predict, X, y) -> float | None:
    return None if y is None or len(y) == 0 else float(np.mean(predict(X) == y))


def _check_out(out) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory.")
    return out


def _replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``, so an
    interrupted command never leaves a half-written output."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _finish(student, out: Path, summary: dict) -> dict:
    student.save(out / "student")
    summary = {**summary, "student": str(out / "student"), "size_bytes": student.size_bytes,
               "report": str(out / REPORT_FILE)}
    report = json.dumps({**summary, "student_description": student.describe()}, indent=2)
    _replace_atomically(out / REPORT_FILE, lambda tmp: tmp.write_text(report))
    return summary


def condense_file(data, out, *, method: str = "ksu", selection: str = "auto", max_prototypes=None,
                  metric: str = "euclidean", index: str = "exact", label: str | None = None,
                  features: str | None = None, validation_fraction: float = 0.2, delta: float = 0.05,
                  random_state=None, n_jobs=None, progress: bool = False, dask: str | None = None,
                  labels=None) -> dict:
    """Condense a labelled data file into a prototype student under ``out/student``.

    A ``validation_fraction`` of the rows (stratified) is held out: the student is fitted on
    the rest and its accuracy on both parts is reported next to the kept fraction and the
    compression bound. ``out/report.json`` holds the summary and the student's description.

    With ``dask`` (``"local"``, ``"local:N"`` or ``"tcp://host:port"``) the data are read
    partition by partition (``.npy`` files or directories with ``labels`` as ``.npy``,
    Parquet with a ``label`` column, Zarr) and condensed by partitions on that cluster
    (:meth:`nnkd.MarginCondensedNN.fit` on a dask array); nothing needs to fit in memory
    but the prototypes and one partition per worker.

    Returns
    -------
    summary : dict
    """
    from nnkd.neighbors import MarginCondensedNN

    out = _check_out(out)
    clf = MarginCondensedNN(method=method, selection=selection, max_prototypes=max_prototypes, metric=metric,
                            index=index, delta=delta, random_state=random_state, n_jobs=n_jobs, verbose=progress)
    if dask is not None:
        with dask_client(dask):
            X, y = read_rows_lazily(data, label=label, labels=labels)
            if y is None:
                raise ValueError(f"{data}: condensing needs labels (--label COLUMN for Parquet, --labels FILE.npy).")
            y = np.asarray(y.compute())
            return _condense(clf, X, y, data, out, method, validation_fraction, random_state, delta,
                             extra={"dask": dask, "n_partitions": len(X.chunks[0])})
    if labels is not None:
        raise ValueError("labels= (--labels) goes with dask= (--dask); an in-memory file carries its own labels.")
    d = read_data(data, label=label, features=features, require_labels=True)
    return _condense(clf, d.X, d.y, d.path, out, method, validation_fraction, random_state, delta)


def _condense(clf, X, y, path, out: Path, method: str, validation_fraction: float, random_state, delta: float,
              extra: dict | None = None) -> dict:
    train, val = _holdout(len(y), y, validation_fraction, random_state)
    clf.fit(X[train], y[train])
    student = clf.to_student()

    def accuracy(rows):
        # The student predicts what the estimator predicts, on dask arrays too (by partitions).
        return None if len(rows) == 0 else float(np.mean(_materialise(student.predict(X[rows])) == y[rows]))

    summary = {"command": "condense", "data": str(path), "method": method, "selection": clf.selection_,
               "n_train": int(len(train)), "n_validation": int(len(val)), "n_features": int(X.shape[1]),
               "n_classes": int(len(clf.classes_)), "n_prototypes": int(len(clf.support_)),
               "kept_fraction": float(clf.compression_ratio_),
               "train_accuracy": accuracy(train), "validation_accuracy": accuracy(val),
               "bound": clf.bound_, "bound_kind": "compression", "bound_vacuous": clf.bound_vacuous_,
               "bound_delta": delta, **(extra or {})}
    return _finish(student, out, summary)


def _materialise(values):
    return np.asarray(values.compute()) if is_dask_collection(values) else values


def _teacher_codes(y: np.ndarray, classes, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels as teacher-output codes, and the class of each output: ``classes`` names the
    outputs in order (default: the sorted labels)."""
    names = np.unique(y) if classes is None else np.asarray(classes, dtype=y.dtype)
    if len(names) != n_outputs or len(np.unique(names)) != len(names):
        given = "--classes names" if classes is not None else "the labels have"
        raise ValueError(f"the teacher has {n_outputs} outputs but {given} {len(np.unique(names))} distinct classes "
                         f"({names.tolist()[:10]}); they must match one to one.")
    lookup = {v: i for i, v in enumerate(names.tolist())}
    unknown = sorted({v for v in y.tolist() if v not in lookup}, key=str)
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among --classes {names.tolist()}.")
    return np.array([lookup[v] for v in y.tolist()], dtype=np.int64), names


def _check_output_order(codes: np.ndarray, teacher_hard: np.ndarray, names: np.ndarray) -> None:
    """Refuse a label-to-output mapping the teacher's own predictions contradict: when another
    order of the classes agrees with the teacher on 10 points more of the rows, say which."""
    from scipy.optimize import linear_sum_assignment

    n = len(names)
    agree = np.zeros((n, n))
    np.add.at(agree, (teacher_hard, codes), 1)
    rows, cols = linear_sum_assignment(-agree)
    best, given = agree[rows, cols].sum() / len(codes), np.trace(agree) / len(codes)
    if best > given + 0.1:
        order = ",".join(str(names[c]) for c in cols[np.argsort(rows)])
        raise ValueError(f"the teacher agrees with {100 * given:.0f}% of the labels when its outputs are the classes "
                         f"in sorted order, but with {100 * best:.0f}% in the order {order}: name the classes of "
                         f"the teacher's outputs in order with --classes {order}.")


def distill_file(data, teacher, out, *, embedding: str | None = None, space: str = "projection",
                 budget_kb: float | None = 64.0, dtype: str = "auto", label: str | None = None,
                 features: str | None = None, classes=None, validation_fraction: float = 0.2, random_state=None,
                 n_jobs=None, progress: bool = False) -> dict:
    """Distil a TorchScript teacher file on the rows of a data file into a student under ``out/student``.

    Fidelity (top-1 agreement with the teacher) and, when the file has labels, accuracy are
    reported on the held-out ``validation_fraction`` of the rows. ``classes`` names the
    teacher's outputs in order (default: the sorted labels, or ``0 .. n_outputs - 1``); a
    label order the teacher's own predictions contradict is refused with the order they suggest.

    Returns
    -------
    summary : dict
    """
    from nnkd.distill import NNDistiller
    from nnkd.teachers import TorchTeacher

    out = _check_out(out)
    d = read_data(data, label=label, features=features)
    teacher_model = TorchTeacher.from_torchscript(teacher, embedding=embedding, progress=progress)
    train, val = _holdout(len(d.X), d.y, validation_fraction, random_state)
    codes = names = None
    if d.y is not None:
        n_outputs = teacher_model.logits(d.X[:1]).shape[1]
        codes, names = _teacher_codes(d.y, classes, n_outputs)
        _check_output_order(codes[train], np.argmax(teacher_model.logits(d.X[train]), axis=1), names)
    elif classes is not None:
        names = np.asarray(classes)
    dist = NNDistiller(teacher_model, space=space, size_budget_kb=budget_kb, dtype=dtype, random_state=random_state,
                       n_jobs=n_jobs, verbose=progress)
    dist.fit(d.X[train], None if codes is None else codes[train])
    student = dist.to_student()
    if names is not None:
        student.classes = names
    student.meta.update(teacher_file=str(Path(teacher).resolve()), teacher_embedding=embedding)
    summary = {"command": "distill", "data": str(d.path), "teacher": str(teacher), "space": space,
               "budget_kb": budget_kb, "dtype": student.dtype, "n_train": int(len(train)), "n_validation": int(len(val)),
               "n_prototypes": int(len(dist.prototypes_)),
               "train_fidelity": dist.training_fidelity_,
               "validation_fidelity": dist.fidelity(d.X[val]) if len(val) else None,
               "validation_accuracy": _accuracy(dist.predict, d.X[val], None if codes is None else codes[val]),
               "bound": dist.bound_, "bound_kind": dist.bound_kind_, "bound_target": dist.bound_target_,
               "bound_vacuous": dist.bound_vacuous_, "recipe": None if dist.recipe_ is None else
               {k: v for k, v in dist.recipe_.items() if k != "candidates"}, "expects": student.expects()}
    return _finish(student, out, summary)


def predict_file(student_dir, data, out, *, proba: bool = False, label: str | None = None,
                 features: str | None = None, teacher=None, embedding: str | None = None, key_file=None,
                 trust_native: bool | None = None, dask: str | None = None) -> dict:
    """Predict every row of a data file with a saved student; write ``out`` (``.npy`` or ``.csv``).

    ``label`` names a column to leave out of the features (it is not used). A student that
    takes teacher embeddings needs the ``teacher`` TorchScript file to embed the rows. With
    ``dask`` (``"local[:N]"`` or ``"tcp://host:port"``) ``data`` may be a ``.npy`` file, a
    directory of ``.npy`` or Parquet files, or a Zarr array, read and predicted partition by
    partition on that cluster (the student shipped to each worker once).

    Returns
    -------
    summary : dict
    """
    from nnkd.student import load_student

    out = Path(out)
    if out.suffix.lower() not in (".npy", ".csv"):
        raise ValueError(f"--out {out}: write predictions to a .npy or .csv file.")
    student = load_student(student_dir, key_file=key_file, trust_native=trust_native)
    if proba:
        student.check_proba()
    if dask is not None:
        with dask_client(dask):
            X, _ = read_rows_lazily(data, label=label)
            n_partitions = len(X.chunks[0])
            result = _predict_rows(student, X, proba, teacher, embedding, student_dir)
        summary = {"dask": dask, "n_partitions": n_partitions}
        path = Path(data)
    else:
        d = read_data(data, label=label, features=features)
        X, path, summary = d.X, d.path, {}
        result = _predict_rows(student, X, proba, teacher, embedding, student_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_predictions(out, result, [str(c) for c in student.classes] if proba else ["prediction"])
    return {"command": "predict", "student": str(student_dir), "data": str(path), "n_rows": int(len(result)),
            "output": str(out), "proba": proba, **summary}


def _predict_rows(student, X, proba: bool, teacher, embedding, student_dir) -> np.ndarray:
    if student.needs_teacher:
        if teacher is None:
            raise ValueError(f"{student_dir} takes {student.expects()}: pass the teacher with --teacher MODEL.pt "
                             "(and --embedding LAYER as at distillation).")
        from nnkd.teachers import TorchTeacher

        X = TorchTeacher.from_torchscript(teacher, embedding=embedding or student.meta.get("teacher_embedding")
                                          ).embed(X)
    elif teacher is not None:
        raise ValueError(f"{student_dir} takes {student.expects()}; it needs no --teacher.")
    return _materialise(student.predict_proba(X) if proba else student.predict(X))


def _write_predictions(out: Path, result: np.ndarray, names: list[str]) -> None:
    def write(tmp: Path) -> None:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, result, allow_pickle=False)
            return
        rows = result if result.ndim == 2 else result[:, None]
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(",".join(names) + "\n")
            for row in rows:
                f.write(",".join(repr(v.item()) if isinstance(v, np.floating) else str(v) for v in row) + "\n")

    _replace_atomically(out, write)
