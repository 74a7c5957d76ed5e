"""Faults injected into an `mlm` command run in a subprocess, for the robustness tests.

`python -c DRIVER ARGS...` (see `command`) installs the fault named by the environment variable `MLM_FAULT`,
then runs `python -m mlm ARGS...` as usual:

- `readonly:ERRNO:DIR`: every write under DIR fails with ERRNO, as on a read-only file system (EROFS) or in a
  folder without write permission (EACCES), whoever runs the tests (root ignores chmod): `os.mkdir`,
  `os.open` and `open()` for writing, `os.link`, `os.replace`, `os.rename`, `os.unlink`, `os.rmdir`.
- `arrow-enospc`: writing a batch to an Arrow file fails the way pyarrow reports a full disk.
- `safetensors-enospc:N`: the Nth safetensors file saved fails the way safetensors reports a full disk.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

DRIVER = f"""
import runpy, sys
sys.path.insert(0, {str(HERE)!r})
import faults
faults.install()
runpy.run_module("mlm", run_name="__main__", alter_sys=True)
"""


def command(*args: str) -> list[str]:
    """The argv that runs `mlm ARGS` with the fault of `MLM_FAULT` installed."""
    return [sys.executable, "-c", DRIVER, *args]


def install() -> None:
    kind, _, arg = os.environ.get("MLM_FAULT", "").partition(":")
    if kind == "readonly":
        code, _, root = arg.partition(":")
        _readonly(getattr(errno, code), Path(root).resolve())
    elif kind == "arrow-enospc":
        _arrow_enospc()
    elif kind == "safetensors-enospc":
        _safetensors_enospc(int(arg))


def _readonly(code: int, root: Path) -> None:
    def under(path, dir_fd=None) -> bool:
        if dir_fd is not None or isinstance(path, int):
            return False
        p = Path(os.fsdecode(path)).absolute()
        return p == root or root in p.parents

    def fail(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def guard(fn, writes=lambda *a, **k: True):
        def wrapped(path, *args, **kwargs):
            if writes(*args, **kwargs) and under(path, kwargs.get("dir_fd")):
                fail(path)
            return fn(path, *args, **kwargs)

        return wrapped

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    os.open = guard(os.open, lambda flags, *a, **k: bool(flags & write_flags))
    builtins.open = io.open = guard(io.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+"))
    for name in ("mkdir", "link", "replace", "rename", "unlink", "rmdir"):
        setattr(os, name, guard(getattr(os, name)))


def _arrow_enospc() -> None:
    from datasets.arrow_writer import ArrowWriter

    def write_batch(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    ArrowWriter.write_batch = write_batch


def _safetensors_enospc(nth: int) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    real = safetensors.torch.save_file
    calls = [0]

    def save_file(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(*args, **kwargs)

    safetensors.torch.save_file = save_file
