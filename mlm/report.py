"""The run report: report.json, report.md, a loss-curve PNG and the summary table printed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.io import read_json, write_json

PRETRAIN_KEYS = ("eval_loss", "perplexity", "masked_accuracy", "tokens_seen", "train_tokens_per_second")


def plot_loss_curves(log_history: list[dict], path: Path, title: str = "MLM pretraining") -> Path | None:
    """Training and evaluation loss against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="training loss", color="tab:blue", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="evaluation loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MLM cross-entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def build_report(plan, results: dict[str, Any]) -> dict[str, Any]:
    """report.json: the recipe, its pretraining metrics and its fine-tuning comparison (`mlm evaluate`'s
    results: rows per task, split, method and label fraction)."""
    report: dict[str, Any] = {"recipe": str(plan.path), "name": plan.name, "output_dir": str(plan.output_dir)}
    pre = results.get("pretrain")
    if pre:
        report["pretrain"] = {k: pre.get(k) for k in (*PRETRAIN_KEYS, "steps", "train_seconds", "parameters")}
    ft = results.get("finetune")
    if ft:
        report["finetune"] = {"results": str(Path(plan.configs["finetune"].output_dir) / "results.json"),
                              "rows": [r for r in ft.get("rows", []) if not r.get("intermediate")]}  # fmt: skip
    return report


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def summary_tables(report: dict[str, Any]) -> str:
    """Markdown tables; the same text is printed and written to report.md."""
    from mlm.evaluate.results import main_table

    lines = [f"# Report: {report['name']}", ""]
    if "pretrain" in report:
        lines += ["## Pretraining", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(report['pretrain'].get(k))} |" for k in report["pretrain"]]
        lines.append("")
    if "finetune" in report:
        lines += ["## Fine-tuning", "", *main_table(report["finetune"]), ""]
    if report.get("loss_curves"):
        lines += [f"![loss curves]({Path(report['loss_curves']).name})", ""]
    return "\n".join(lines)


def write_report(plan, results: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and loss_curves.png under the recipe's output_dir; print the tables."""
    out = Path(plan.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(plan, results)
    pre_cfg = plan.configs.get("pretrain")
    if pre_cfg is not None and (Path(pre_cfg.output_dir) / "log_history.json").is_file():
        history = read_json(Path(pre_cfg.output_dir) / "log_history.json")
        png = plot_loss_curves(history, out / "loss_curves.png", title=f"{plan.name}: MLM pretraining")
        if png:
            report["loss_curves"] = str(png)
    text = summary_tables(report)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(text + "\n")
    print("\n" + text)
    return report
