"""How facts read on the card: numbers, durations, labels, bullet lists and metric tables."""

from __future__ import annotations

import math
from typing import Any

# Metric keys that describe the run rather than the model's quality.
_NOT_METRICS = ("runtime", "per_second", "epoch", "step", "flos", "samples")


def known(value: Any) -> bool:
    """Whether a fact is worth stating (not None, empty or a non-finite number)."""
    if value is None or value == "" or value == [] or value == {}:
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def fmt(value: Any) -> str:
    """How numbers appear in the card's text: ints with thousands separators, floats with 4 significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def fmt_duration(seconds: float) -> str:
    """`3,725 s (1 h 02 min)`: seconds, and hours and minutes when there are any."""
    seconds = float(seconds)
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    human = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else ""
    total = f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    return f"{total} ({human})" if human else total


# Metric names that do not read well humanized.
_NAMES = {"mse": "MSE", "mae": "MAE", "pearsonr": "Pearson r", "spearmanr": "Spearman rho"}


def humanize(key: str) -> str:
    """`masked_accuracy` -> `Masked accuracy`; `mse` -> `MSE`."""
    if str(key) in _NAMES:
        return _NAMES[str(key)]
    text = str(key).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def code(value: Any) -> str | None:
    """`value` in backticks, None when unknown."""
    return f"`{fmt(value)}`" if known(value) else None


def number(value: Any) -> str | None:
    return fmt(value) if known(value) else None


def bullets(items: list[tuple[str, str | None]]) -> list[str]:
    """`- Label: value` lines for the known values."""
    return [f"- {label}: {value}" for label, value in items if known(value)]


def metric_items(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The quality metrics among `metrics` (numbers only; runtimes, counts and epochs left out)."""
    out = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not known(value):
            continue
        if not any(word in key for word in _NOT_METRICS):
            out[key] = value
    return out


def metric_name(key: str) -> str:
    """`eval_accuracy` -> `accuracy`: the metric without the split prefix Trainer adds."""
    for prefix in ("eval_", "test_", "validation_"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def fmt_flops(flops_per_second: float) -> str:
    """`25.3 GFLOP/s`, `989 TFLOP/s`: FLOP/s with an SI prefix and 3 significant digits."""
    value = float(flops_per_second)
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}FLOP/s"
    return f"{value:.3g} FLOP/s"


def fmt_share(share: float) -> str:
    """A share of the peak as a percentage: `31%`, `3.2%`, `0.41%`."""
    percent = 100 * float(share)
    if percent >= 10:
        return f"{percent:.0f}%"
    if percent >= 1:
        return f"{percent:.1f}%"
    return f"{percent:.2g}%"


def fmt_utilisation(
    share: float | None, peak_flops: float | None, source: str | None = None, devices: int | None = None
) -> str | None:
    """`31% of 989 TFLOP/s (table: H100 SXM)`, `2.1% of 4 x 25.3 GFLOP/s (measured: 2 threads)`; None
    when the share is not known."""
    if not known(share):
        return None
    text = fmt_share(share)
    if known(peak_flops):
        times = f"{devices} x " if devices and devices > 1 else ""
        text += f" of {times}{fmt_flops(peak_flops)}"
    return text + (f" ({source})" if known(source) else "")
