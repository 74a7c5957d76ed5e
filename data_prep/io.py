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


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; rename it to `path` on success, delete it on error."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


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
