"""Progress bars of the steps: tqdm on stderr, with a count, a rate and (when the total is known) an ETA.

`mlm --quiet` hides them (`configure(quiet=True)`, or MLM_QUIET=1 in the environment); `mlm --verbose` lets the
libraries show their own output too. The `mlm` package reads the same settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

_SETTINGS: dict[str, bool | None] = {"quiet": False, "verbose": None}


def configure(quiet: bool | None = None, verbose: bool | None = None) -> None:
    """Hide the progress bars (`quiet`) or show the libraries' own output (`verbose`), process-wide."""
    if quiet is not None:
        _SETTINGS["quiet"] = bool(quiet)
    if verbose is not None:
        _SETTINGS["verbose"] = bool(verbose)


@contextlib.contextmanager
def settings(quiet: bool | None = None, verbose: bool | None = None) -> Iterator[None]:
    """`configure(quiet, verbose)` for the duration of a `with` block (the `mlm` command's run)."""
    before = dict(_SETTINGS)
    configure(quiet, verbose)
    try:
        yield
    finally:
        _SETTINGS.update(before)


def quiet() -> bool:
    """Whether progress bars are hidden."""
    return bool(_SETTINGS["quiet"]) or os.environ.get("MLM_QUIET", "") not in ("", "0")


def verbose() -> bool:
    """Whether the libraries' own output (the Trainer's log dicts, load reports, their bars) is shown: only
    when asked for (`mlm --verbose`, `configure(verbose=True)`), from the command line and from Python."""
    return _SETTINGS["verbose"] is True


def bar(
    total: float | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False, **kwargs: Any
):
    """A tqdm bar (a disabled one under --quiet): `update(n)` it, `close()` it (or use it as a context)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=quiet(), dynamic_ncols=True,
                mininterval=0.5, **kwargs)  # fmt: skip
