"""The charts of an evaluation: results.png (bars), label_efficiency.png and pretraining_curve.png."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlm.evaluate.plan import METHODS
from mlm.evaluate.results import main_rows

METHOD_LABELS = {"pretrained": "pretrained", "scratch": "from scratch", "tfidf": "TF-IDF + LogReg"}
COLORS = {"pretrained": "tab:blue", "scratch": "tab:orange", "tfidf": "tab:gray"}


def write_plots(results: dict, out: Path) -> dict[str, str]:
    """Draw every chart the results have data for; return {name: path}."""
    plots = {}
    for name, fn in (
        ("results", plot_bars),
        ("label_efficiency", plot_label_efficiency),
        ("pretraining_curve", plot_pretraining_curve),
    ):
        path = fn(results, out / f"{name}.png")
        if path:
            plots[name] = str(path)
    return plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, width: float = 4.2, height: float = 3.4):
    """(pyplot, figure, n axes) on a grid at most 3 wide."""
    plt = _plt()
    cols = min(n, 3)
    rows_n = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(width * cols, height * rows_n), dpi=110, squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return plt, fig, flat[:n]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(results: dict, path: Path) -> Path | None:
    """Primary metric per task and split at the largest label fraction: one bar per method, min–max bars."""
    rows = main_rows(results)
    if not rows:
        return None
    top = max(r["label_fraction"] for r in rows)
    rows = [r for r in rows if r["label_fraction"] == top]
    groups = list(dict.fromkeys((r["task"], r["split"]) for r in rows))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) + 2), 4), dpi=110)
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        xs, ys, lo, hi = [], [], [], []
        for j, (task, split) in enumerate(groups):
            r = next((r for r in rows if (r["task"], r["split"], r["method"]) == (task, split, method)), None)
            if r is None:
                continue
            s = r["metrics"][r["metric"]]
            xs.append(j + (i - 1) * width)
            ys.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=METHOD_LABELS[method], color=COLORS[method])
    metric_of = {(r["task"], r["split"]): r["metric"] for r in rows}
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{t}\n{s} ({metric_of[(t, s)]})" for t, s in groups], fontsize=8)
    ax.set_ylabel("score (median over seeds)")
    ax.set_title(f"{results['suite_name']}: {Path(results['model']).name}, label fraction {top:g}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_label_efficiency(results: dict, path: Path) -> Path | None:
    """Score against the number of training labels (log x), one panel per task and split."""
    rows = main_rows(results)
    if len({r["label_fraction"] for r in rows}) < 2:
        return None
    groups = list(dict.fromkeys((r["task"], r["split"]) for r in rows))
    plt, fig, axes = _grid(len(groups))
    for ax, (task, split) in zip(axes, groups):
        metric = None
        for method in METHODS:
            pts = sorted(
                (r for r in rows if (r["task"], r["split"], r["method"]) == (task, split, method)),
                key=lambda r: r["train_samples"],
            )
            if not pts:
                continue
            metric = pts[0]["metric"]
            xs = [r["train_samples"] for r in pts]
            s = [r["metrics"][metric] for r in pts]
            ax.plot(xs, [v["median"] for v in s], "o-", color=COLORS[method], label=METHOD_LABELS[method])
            ax.fill_between(
                xs, [v["min"] for v in s], [v["max"] for v in s], color=COLORS[method], alpha=0.15
            )
        ax.set_xscale("log")
        _label_axes(ax, "training labels", metric, f"{task} ({split})", which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"Label efficiency: {Path(results['model']).parent.name}/{Path(results['model']).name}")
    return _save(plt, fig, path)


def _label_axes(ax: Any, xlabel: str, metric: str | None, title: str, which: str = "major") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric or "score")
    ax.set_title(title)
    ax.grid(alpha=0.3, which=which)


def plot_pretraining_curve(results: dict, path: Path) -> Path | None:
    """Downstream score against pretraining tokens seen, for every checkpoint (scratch = dashed line)."""
    curve = [r for r in results["rows"] if r["method"] == "pretrained" and r.get("checkpoint")]
    keys = list(dict.fromkeys((r["task"], r["split"], r["label_fraction"]) for r in curve))
    keys = [k for k in keys if len({r.get("step") for r in curve if _key(r) == k}) > 1]
    if not keys:
        return None
    groups = list(dict.fromkeys((t, s) for t, s, _ in keys))
    plt, fig, axes = _grid(len(groups))
    use_tokens = all(r.get("tokens_seen") for r in curve)
    for ax, (task, split) in zip(axes, groups):
        metric = None
        for n, key in enumerate(k for k in keys if k[:2] == (task, split)):
            pts = sorted((r for r in curve if _key(r) == key), key=lambda r: r.get("step") or 0)
            metric = pts[0]["metric"]
            _draw_curve(ax, pts, metric, f"C{n}", use_tokens)
            _draw_baselines(ax, results["rows"], key, metric, f"C{n}")
        xlabel = "pretraining tokens seen" if use_tokens else "pretraining step"
        _label_axes(ax, xlabel, metric, f"{task} ({split})")
        ax.legend(fontsize=7)
    fig.suptitle("Downstream score along pretraining")
    return _save(plt, fig, path)


def _key(row: dict) -> tuple[str, str, float]:
    return row["task"], row["split"], row["label_fraction"]


def _draw_curve(ax: Any, pts: list[dict], metric: str, color: str, use_tokens: bool) -> None:
    """The pretrained model's median score at each checkpoint, with its min–max band."""
    xs = [r["tokens_seen"] if use_tokens else r.get("step") for r in pts]
    scores = [r["metrics"][metric] for r in pts]
    ax.plot(xs, [s["median"] for s in scores], "o-", color=color,
            label=f"pretrained, {pts[-1]['train_samples']:,} labels")  # fmt: skip
    ax.fill_between(xs, [s["min"] for s in scores], [s["max"] for s in scores], color=color, alpha=0.15)


def _draw_baselines(ax: Any, rows: list[dict], key: tuple, metric: str, color: str) -> None:
    """From scratch (dashed) and TF-IDF (dotted) at the same task, split and label fraction."""
    for method, style in (("scratch", "--"), ("tfidf", ":")):
        base = next((r for r in rows if _key(r) == key and r["method"] == method), None)
        if base:
            ax.axhline(
                base["metrics"][metric]["median"], color=color, linestyle=style, linewidth=1,
                label=f"{METHOD_LABELS[method]}, {base['train_samples']:,} labels",
            )  # fmt: skip
