"""Safe writes: every output folder appears whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.errors import CorruptFileError, UserError


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; rename it to `path` on success, delete it on error.

    An existing folder at `path` is replaced (callers check first that it may be: `data_prep.outputs`); an
    existing file, or a path with no name of its own (`.`, `/`), is refused."""
    final = Path(os.path.expanduser(str(path))).resolve()
    if final == Path(final.anchor) or (final.exists() and not final.is_dir()):
        raise UserError(f"output_dir {path} is not a folder this step can write; name a new folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
        yield tmp
        _swap(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(tmp: Path, final: Path) -> None:
    """Put `tmp` at `final`; a folder already there is moved aside first, then deleted."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)  # the previous output stays
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in `path`; a file that is not valid JSON (cut short, overwritten) is a `CorruptFileError`
    naming it. A missing file is still an `OSError`."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CorruptFileError(f"{p} is damaged: not valid JSON ({e})") from None


def match_file_modes(folder: str | os.PathLike, pattern: str = "*.safetensors") -> None:
    """Give the files of `folder` matching `pattern` the mode of its other files (the weights are written
    through a private temporary file, 0600): a model folder is readable alike, e.g. 0644."""
    folder = Path(folder)
    others = [
        p for p in folder.iterdir() if p.is_file() and not p.match(pattern) and not p.name.startswith(".")
    ]
    if others:
        mode = others[0].stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    for path in folder.glob(pattern):
        if path.is_file() and path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
