"""Drawing a soft decision tree: each inner node's filter, each leaf's class distribution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nnkd._core.artifacts import import_optional
from nnkd.student import TreeStudent

#: Inches per leaf column and per level row.
_LEAF_WIDTH_IN, _LEVEL_HEIGHT_IN = 0.55, 1.0


def node_filters(student: TreeStudent, units: str = "standardised") -> np.ndarray:
    """Each inner node's filter, ndarray of shape (n_inner, n_features), float64.

    The gate reads ``beta (w . (x - mean) / scale + b)``. ``units="standardised"``: ``beta w``,
    the change of the gate's input per standard deviation of each feature (how much a
    feature's typical variation matters); ``units="input"``: ``beta w / scale``, the weights on
    raw inputs (nearly constant features, such as border pixels, get large weights there
    although they hardly move the gate).
    """
    if units not in ("standardised", "input"):
        raise ValueError(f"units={units!r} must be 'standardised' or 'input'.")
    W = student.gate_weights.astype(np.float64) * student.gate_betas[:, None]
    return W / student.input_scale if units == "input" and student.input_scale is not None else W


def _image_shape(n_features: int, image_shape) -> tuple[int, int] | None:
    if image_shape == "auto":
        side = math.isqrt(n_features)
        return (side, side) if side * side == n_features and side >= 4 else None
    if image_shape is None:
        return None
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or shape[0] * shape[1] != n_features:
        raise ValueError(f"image_shape={image_shape!r} must be (height, width) with height * width = "
                         f"{n_features} features, 'auto' or None.")
    return shape


def plot_tree(student: TreeStudent, path, *, image_shape="auto", class_names=None, units: str = "standardised",
              dpi: int = 80) -> Path:
    """Draw a ``kind="tree"`` student into an image file (format from the suffix of ``path``).

    Inner nodes show their filter (:func:`node_filters`): an image (red positive, blue
    negative; a row goes right when the weighted sum is high) when the features form one,
    else a bar per feature. Leaves show their class distribution, titled
    with the most probable class.

    Parameters
    ----------
    student : nnkd.student.TreeStudent
        A ``kind="tree"`` student (``SoftDecisionTreeClassifier.to_student()`` or
        ``load_student``).
    path : str or Path
    image_shape : (int, int), "auto" or None, default="auto"
        Shape of a filter drawn as an image; ``"auto"``: square images of side >= 4 when the
        feature count is a perfect square; ``None``: always bars.
    class_names : sequence of str, default=None
        Leaf labels (default: the student's classes).
    units : {"standardised", "input"}, default="standardised"
        Filter units (see :func:`node_filters`).
    dpi : int, default=80

    Returns
    -------
    path : Path
    """
    if not isinstance(student, TreeStudent):
        raise TypeError("plot_tree needs a TreeStudent (SoftDecisionTreeClassifier.to_student()); got "
                        f"{type(student).__name__}.")
    import_optional("matplotlib", "matplotlib", "plot_tree", hint="or pip install 'nnkd[bench]'")
    # A bare Figure (no pyplot): no global backend state, nothing left open.
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    depth, n_features = student.depth, student.n_features_in
    shape = _image_shape(n_features, image_shape)
    names = [str(c) for c in (student.classes if class_names is None else class_names)]
    if len(names) != len(student.classes):
        raise ValueError(f"class_names has {len(names)} names for {len(student.classes)} classes.")
    filters = node_filters(student, units)
    n_leaves = 2 ** depth
    fig_w, fig_h = max(6.0, n_leaves * _LEAF_WIDTH_IN), (depth + 1) * _LEVEL_HEIGHT_IN + 0.4
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    row_h = 1.0 / (depth + 1)

    def box(level: int, j: int) -> tuple[float, float, float, float]:
        """Axes rectangle (figure fractions) of the j-th node of a level: square, centred in its cell."""
        cell_w_in = fig_w / 2 ** level
        side_in = min(0.85 * cell_w_in, 0.7 * _LEVEL_HEIGHT_IN)
        w, h = side_in / fig_w, side_in / fig_h
        cx, top = (j + 0.5) / 2 ** level, 1.0 - level * row_h
        return cx - w / 2, top - 0.15 * row_h - h, w, h

    for level in range(depth + 1):                      # edges first, under the nodes
        for j in range(2 ** level if level < depth else 0):
            x0, y0, w, _ = box(level, j)
            for child in (2 * j, 2 * j + 1):
                cx, cy, cw, ch = box(level + 1, child)
                fig.add_artist(Line2D([x0 + w / 2, cx + cw / 2], [y0, cy + ch], color="0.7", lw=0.6))
    for i in range(2 ** depth - 1):
        level = int(math.log2(i + 1))
        ax = fig.add_axes(box(level, i - (2 ** level - 1)))
        f = filters[i]
        lim = float(np.abs(f).max()) or 1.0
        if shape is not None:
            ax.imshow(f.reshape(shape), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            ax.bar(np.arange(n_features), f, color=np.where(f >= 0, "tab:red", "tab:blue"), width=0.9)
            ax.set_ylim(-lim, lim)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"node {i}", fontsize=6, pad=1)
    for leaf in range(n_leaves):
        ax = fig.add_axes(box(depth, leaf))
        q = student.leaf_distributions[leaf]
        top = int(np.argmax(q))
        ax.bar(np.arange(len(q)), q, color=["tab:green" if k == top else "0.6" for k in range(len(q))], width=0.8)
        ax.set_ylim(0, 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(names[top], fontsize=7, pad=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
