"""Output folders: where a step may write, one run per folder, the leftovers of killed runs, OS errors.

Every step writes its folder through `output_folder`:

    with output_folder(cfg.output_dir, "pack", {"data_dir": cfg.data_dir, "tokenizer_dir": ...}) as tmp:
        ...  # write into tmp; renamed to output_dir when the block ends without an error

- The folder is created only where nothing is, or where a previous output of the same step is (its
  `mlm_step.json` names the step). It is never an input of the command, a folder holding one, the current
  folder (or one holding it), or an existing file: each is a `UserError` naming both paths (`check_output`).
- One run per folder: `.NAME.lock` beside it, filelock's `MarkerSoftFileLock`, names the owner's PID and host. A
  second run is refused, naming them; a lock whose process is gone (same host) is taken over with a one-line
  note. Only the main process of a distributed launch takes it (`is_main_process`).
- Once it holds the lock a run removes what killed runs left beside the folder (`.NAME.tmp-*`, `.NAME.old-*`,
  `.NAME.deleting-*`) and, for a folder filled in place, the same kinds of leftovers inside it.
- A folder a step fills over several runs (pretraining's checkpoints, evaluate's runs) is claimed
  `in_place`: the block gets the folder itself, with a first `mlm_step.json` written at once, so a run that
  is killed leaves a folder the next run recognises.

`describe_os_error` words an `OSError` as the one line the CLI prints; `as_os_error` recognises a disk-full
or read-only error that a library reported as another exception type (torch, safetensors).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.errors import UserError
from data_prep.io import atomic_output_dir
from data_prep.steps import STEP_FILE, read_step_metadata, write_step_metadata

InputPaths = Mapping[str, "str | os.PathLike | Sequence[str | os.PathLike] | None"]
LEFTOVER_KINDS = ("tmp", "old", "deleting")
_IGNORED = frozenset({".DS_Store"})
_LEFTOVER = re.compile(r"^\.(.+)\.(?:tmp|old|deleting)-[^/]*$")
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
_RECOGNISED_ERRNOS = (*_WRITE_ERRNOS, errno.EACCES, errno.EPERM, errno.EIO)
_TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")
_UNREADABLE_WAIT_S = 3.0  # filelock takes over a lock marker that stays unreadable for 2 s


def is_main_process() -> bool:
    """False in the processes of a distributed launch (torchrun, accelerate launch) other than rank 0."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _resolve(path: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(path))).resolve()


def _input_paths(inputs: InputPaths) -> list[tuple[str, str, Path]]:
    """(option name, path as given, resolved path) of every local path among the inputs."""
    found = []
    for name, value in inputs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            text = str(v).strip() if v is not None else ""
            if text and not text.startswith(("hf:", "builtin:")):
                found.append((name, text, _resolve(text)))
    return found


def check_output(
    path: str | os.PathLike, step: str, inputs: InputPaths, own: Callable[[Path], bool] | None = None
) -> Path:
    """Raise UserError unless `path` may receive `step`'s output; return it resolved. `own` recognises a
    folder of this step that has no `mlm_step.json` (one that keeps a record of its own instead)."""
    out, where = _resolve(path), f"{step}: output_dir {path}"
    if out.exists() and not out.is_dir():
        raise UserError(f"{where} is an existing file, not a folder; name a folder for the output")
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents or out == Path(out.anchor):
        what = "the current folder" if out == cwd else f"a folder holding the current folder {cwd}"
        raise UserError(f"{where} is {what}; name a new folder for the output")
    for name, given, p in _input_paths(inputs):
        if p == out:
            raise UserError(f"{where} is an input ({name}: {given}); choose another output_dir")
        if out in p.parents:
            raise UserError(f"{where} holds an input ({name}: {given}); choose an output_dir outside it")
    if out.is_dir():
        _check_previous(out, step, where, own)
    return out


def _check_previous(out: Path, step: str, where: str, own: Callable[[Path], bool] | None) -> None:
    """An existing folder is accepted when empty, or written by `step` (by its record, or by `own`)."""
    try:
        meta = read_step_metadata(out)
    except (OSError, ValueError):
        raise UserError(f"{where} has an unreadable {STEP_FILE}; choose a new or empty folder") from None
    if isinstance(meta, dict) and meta.get("step") == step:
        return
    if meta is not None:
        made_by = meta.get("step") if isinstance(meta, dict) else None
        raise UserError(
            f"{where} holds the output of the '{made_by}' step, not of '{step}'; choose another output_dir"
        )
    entries = sorted(e.name for e in out.iterdir() if e.name not in _IGNORED and not _LEFTOVER.match(e.name))
    if not entries or (own is not None and own(out)):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise UserError(
        f"{where} already exists and was not written by '{step}' (it holds {shown}); "
        "choose a new or empty folder"
    )


# --- the lock -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockOwner:
    """Who holds an output folder: the process, its host and when it took the lock."""

    pid: int
    host: str
    started: str


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of an output folder: `.NAME.lock` beside it."""
    folder = _resolve(folder)
    return folder.parent / f".{folder.name}.lock"


def _owner(lock: Any, path: Path) -> LockOwner | None:
    """The owner `lock`'s marker names (None when there is none or it cannot be read)."""
    record = lock.owner
    if record is None:
        return None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    except OSError:
        started = "?"
    # filelock writes the host name, then `?pidns-...` when the process runs in its own PID namespace
    return LockOwner(record.pid, record.hostname.split("?pidns-")[0], started)


@contextlib.contextmanager
def hold_lock(folder: str | os.PathLike) -> Iterator[LockOwner]:
    """Hold the lock of `folder` for the block (released on any exit, an exception or an interrupt too); a
    UserError naming the owner when a live run holds it. The lock is filelock's `MarkerSoftFileLock`: its marker
    names the owner's PID, host and process start time, and one whose process is gone (on this host; a PID
    since reused counts as gone) is taken over, as is one that stays unreadable for 2 s."""
    from filelock import MarkerSoftFileLock, Timeout

    path = lock_path(folder)
    lock = MarkerSoftFileLock(path, thread_local=False)
    before = _owner(lock, path)
    unreadable = before is None and path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            if _owner(lock, path) is not None:
                raise
            unreadable = True  # being written, or not filelock's: taken over once unchanged for 2 s
            lock.acquire(timeout=_UNREADABLE_WAIT_S)
    except Timeout:
        owner = _owner(lock, path)
        who = f"PID {owner.pid} on {owner.host} (started {owner.started})" if owner else "another run"
        raise UserError(
            f"{folder} is in use by {who}; wait for that run to end, or delete {path} if it is not running"
        ) from None
    except OSError as e:  # the lock is the first write: name the folder, not the lock's file
        raise OSError(e.errno, e.strerror, str(path.parent)) from e
    if before is not None or unreadable:
        who = (
            f"PID {before.pid} on {before.host} (started {before.started})"
            if before
            else "an unreadable owner"
        )
        print(f"note: {folder}: taking over the lock of {who}, which is no longer running")
    try:
        yield LockOwner(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"))
    finally:
        lock.release()


# --- leftovers ----------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def leftovers(folder: str | os.PathLike, inside: bool = False) -> list[Path]:
    """What killed runs of `folder`'s step left: `.NAME.tmp-*`, `.NAME.old-*`, `.NAME.deleting-*` beside it;
    with `inside`, the same kinds of hidden entries in the folder itself."""
    folder = _resolve(folder)
    found = []
    if folder.parent.is_dir():
        found += [p for k in LEFTOVER_KINDS for p in folder.parent.glob(f".{glob_escape(folder.name)}.{k}-*")]
    if inside and folder.is_dir():
        found += [p for p in folder.iterdir() if _LEFTOVER.match(p.name)]
    return sorted(set(found))


def glob_escape(name: str) -> str:
    """`name` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def remove_leftovers(folder: str | os.PathLike, inside: bool = False) -> list[Path]:
    """Remove the leftovers of killed runs (call it holding the lock); say so in one line."""
    found = leftovers(folder, inside)
    if not found:
        return []
    size = 0
    for p in found:
        with contextlib.suppress(OSError):
            size += _size(p)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    names = ", ".join(p.name for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    print(f"note: removed what an interrupted run left of {folder}: {names} ({size / 1e6:.1f} MB)")
    return found


# --- the output folder --------------------------------------------------------------------------------


@contextlib.contextmanager
def output_folder(
    path: str | os.PathLike,
    step: str,
    inputs: InputPaths,
    *,
    in_place: bool = False,
    own: Callable[[Path], bool] | None = None,
    config: Any = None,
    main: bool | None = None,
) -> Iterator[Path]:
    """Claim `path` for `step` (checked, locked, leftovers removed) and yield where to write: a temporary
    folder renamed to `path` at the end, or with `in_place` the folder itself (its first `mlm_step.json`
    written from `config`). A process other than the main one of a launch only checks: it writes into a
    private temporary folder that is then deleted (in place: into the folder, as the main one directs)."""
    out = check_output(path, step, inputs, own)
    if not (is_main_process() if main is None else main):
        yield from _follower(out, in_place)
        return
    with hold_lock(out):
        remove_leftovers(out, inside=in_place)
        if in_place:
            with _in_place(out, step, inputs, config) as folder:
                yield folder
        else:
            with atomic_output_dir(out) as tmp:
                yield tmp


def _follower(out: Path, in_place: bool) -> Iterator[Path]:
    if in_place:
        yield out
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"mlm-{out.name}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _in_place(out: Path, step: str, inputs: InputPaths, config: Any) -> Iterator[Path]:
    """The folder, made if need be, with a first record; removed again if the block fails before writing."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    if read_step_metadata(out) is None:
        recorded = {name: given for name, given, _ in _input_paths(inputs)}
        write_step_metadata(out, step, config if config is not None else {}, recorded)
    try:
        yield out
    except BaseException:
        if created and [p.name for p in out.iterdir()] == [STEP_FILE]:
            shutil.rmtree(out, ignore_errors=True)
        raise


# --- OS errors ----------------------------------------------------------------------------------------


def public_path(path: str | os.PathLike) -> str:
    """`path` with a temporary output folder (`.NAME.tmp-*`) shown as the folder it becomes."""
    parts = [m.group(1) if (m := _LEFTOVER.match(p)) else p for p in Path(path).parts]
    return str(Path(*parts)) if parts else str(path)


def describe_os_error(e: OSError, output_dir: str | os.PathLike | None = None) -> str:
    """One line for an OSError: `cannot write PATH: reason` (the output folder when the error names no
    file), `cannot access PATH: reason`, or the reason alone."""
    reason = e.strerror or next(iter(str(e).strip().splitlines()), "") or type(e).__name__
    if e.errno in _WRITE_ERRNOS and errno.errorcode.get(e.errno, "") not in reason:
        reason += f" ({errno.errorcode[e.errno]})"
    if e.filename is not None:
        verb = "cannot write" if e.errno in _WRITE_ERRNOS else "cannot access"
        return f"{verb} {public_path(os.fsdecode(e.filename))}: {reason}"
    if output_dir and e.errno in _WRITE_ERRNOS:
        return f"cannot write {output_dir}: {reason}"
    return reason


def as_os_error(exc: BaseException, path: str | os.PathLike | None = None) -> OSError | None:
    """`exc` as an OSError when it is one, or reports one in its message (safetensors: "No space left on
    device (os error 28)"; torch's "file write failed" on a full disk); else None."""
    if isinstance(exc, OSError):
        return exc
    if not isinstance(exc, Exception):
        return None
    text = str(exc)
    for code in _RECOGNISED_ERRNOS:
        if os.strerror(code) in text or f"os error {code})" in text:
            return OSError(code, os.strerror(code), None if path is None else str(path))
    if path is not None and any(s in text for s in _TORCH_WRITE_FAILED) and _disk_full(Path(path)):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return None


def _disk_full(path: Path) -> bool:
    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free < (1 << 20)
            except OSError:
                return False
    return False
