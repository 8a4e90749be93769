"""Plots and summaries of ``results.jsonl``: Pareto frontiers, accuracy plots, summary.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnkd.bench.metrics import pareto_frontier
from nnkd.bench.runner import read_results

RECALL_LEVELS = (0.9, 0.99)


def fmt(value: Any, spec: str) -> str:
    """A number for a markdown table: ``"–"`` when missing or NaN, ``"inf"`` when infinite."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float) and np.isinf(value):
        return "inf"
    return format(value, spec)


def pct(value: Any) -> str:
    """A fraction as a percentage with two decimals (``"–"`` when missing)."""
    return fmt(None if value is None else 100 * value, ".2f")


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    """The lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (not valid JSON) as the strings ``"inf"``, ``"-inf"``
    and ``"nan"``, tuples as lists and paths as strings."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:                  # pragma: no cover - depends on the install
        raise ImportError("plots need matplotlib: pip install matplotlib (or pip install 'nnkd[bench]').") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _label(row: dict) -> str:
    build = ",".join(f"{k}={v}" for k, v in sorted(row.get("build", {}).items()))
    return row["algorithm"] + (f" ({build})" if build else "")


def _params(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted({**row.get("build", {}), **row.get("query", {})}.items())) or "-"


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_label(r), []).append(r)
    return groups


def _search_rows(rows, kind):
    return [r for r in rows if r.get("kind") == kind and "error" not in r]


def _plot_frontiers(rows, x, y, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, group in sorted(_groups(rows).items()):
        xs, ys = np.array([r[x] for r in group]), np.array([r[y] for r in group])
        front = pareto_frontier(xs, ys)
        ax.plot(xs[front], ys[front], marker="o", markersize=4, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)          # two lines: the full title fits the figure's width
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out_dir) -> list[Path]:
    """Write ``pareto.png`` / ``knn.png`` / ``condense.png`` (for the kinds present) and
    ``summary.md`` from ``out_dir/results.jsonl``; returns the paths written."""
    out_dir = Path(out_dir)
    rows = read_results(out_dir)
    if not rows:
        raise ValueError(f"{out_dir / 'results.jsonl'} has no results; run `nnkd bench ann|knn|condense` first.")
    written, lines = [], ["# nnkd bench summary", ""]
    datasets = sorted({r["dataset"] for r in rows})
    machine = rows[-1]["machine"]
    cpus = machine.get("cpu_count", machine.get("cpus"))          # older rows call it "cpus"
    lines.append(f"Dataset(s): {', '.join(datasets)}. Machine: {machine['platform']}, "
                 f"{cpus} CPUs; nnkd {rows[-1]['versions'].get('nnkd')}.")
    lines.append("")
    for kind, x, y, xlabel, ylabel, name in (
            ("ann", "recall", "qps", "recall@k", "queries per second", "pareto.png"),
            ("knn", "accuracy", "qps", "k-NN test accuracy", "queries per second", "knn.png")):
        search = _search_rows(rows, kind)
        if not search:
            continue
        first = search[0]
        _plot_frontiers(search, x, y, out_dir / name, xlabel, ylabel,
                        f"{first['dataset']}: {ylabel} vs {xlabel}\n(k={first['k']}, "
                        f"{'batch' if first['batch'] else 'single queries'}, {first['threads']} thread(s))")
        written.append(out_dir / name)
        heading = (f"## {'Search' if kind == 'ann' else 'k-NN classification'} ({first['dataset']}, "
                   f"k={first['k']}, {'batch' if first['batch'] else 'one query at a time'}, "
                   f"{first['threads']} thread(s))")
        lines += [heading, "", f"![{name}]({name})", ""]
        header = ["algorithm", *[f"best QPS at recall >= {lvl} (parameters)" for lvl in RECALL_LEVELS]]
        if kind == "knn":
            header.append(f"accuracy % at recall >= {RECALL_LEVELS[0]}")
        body = []
        for label, group in sorted(_groups(search).items()):
            cells, acc = [label], "-"
            for lvl in RECALL_LEVELS:
                ok = [r for r in group if r["recall"] >= lvl]
                best = max(ok, key=lambda r: r["qps"]) if ok else None
                cells.append(f"{best['qps']:,.0f} ({_params(best)})" if best else "not reached")
                if best is not None and lvl == RECALL_LEVELS[0] and "accuracy" in best:
                    acc = f"{100 * best['accuracy']:.2f}"
            body.append(cells + ([acc] if kind == "knn" else []))
        lines += markdown_table(header, body)
        failed = [r for r in rows if r.get("kind") == kind and "error" in r]
        if failed:
            lines += ["", "Runs that failed: " + "; ".join(f"{_label(r)} {_params(r)}: {r['error']}" for r in failed)]
        lines.append("")
    condense = [r for r in rows if r.get("kind") == "condense"]
    if condense:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in condense:
            ax.scatter(100 * r["kept_fraction"], 100 * r["accuracy"], label=r["method"])
        ax.set_xlabel("kept fraction of the training set (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{condense[0]['dataset']}: accuracy vs kept fraction")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "condense.png", dpi=120)
        plt.close(fig)
        written.append(out_dir / "condense.png")
        lines += [f"## Condensing ({condense[0]['dataset']})", "", "![condense.png](condense.png)", ""]
        lines += markdown_table(["method", "kept %", "test accuracy %", "bound", "fit s"],
                                [[r["method"], pct(r["kept_fraction"]), pct(r["accuracy"]),
                                  "-" if r.get("bound") is None else f"{r['bound']:.3f}", f"{r['fit_s']:.3f}"]
                                 for r in condense])
        lines.append("")
    (out_dir / "summary.md").write_text("\n".join(lines))
    written.append(out_dir / "summary.md")
    return written
