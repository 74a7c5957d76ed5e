"""The built-in sample corpus: docstrings of the running Python's standard library, no download needed.

`pydocs_corpus()` gives the documents (module, class, function and method docstrings, deduplicated, plus the
`pydoc_data.topics` help texts); `pydocs_task()` a classification task on them: which top-level
standard-library package a docstring comes from. Importing ~350 modules would pollute this process (warnings,
`sys.modules`), so the collection runs once in a fresh `python -I -S` subprocess, cached in-process.

This file only imports the standard library at the top: the subprocess runs it as a script.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter

# Modules never imported: they open windows or browsers, print, change the terminal, are test suites,
# Windows-only, deprecated (warn and vanish in 3.12+), or are near-identical generated code (`encodings`).
_SKIP = frozenset(
    {
        "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "__main__", "readline",
        "lib2to3", "distutils", "ensurepip", "encodings", "pydoc_data", "msilib", "winreg", "winsound",
        "msvcrt", "nt",
    }
)  # fmt: skip
TASK_LABELS = 12  # the task keeps the packages with this many most docstrings
TASK_MIN_CHARS = 30  # and docstrings at least this long
_TOPICS = "pydoc_data.topics"


def _collect() -> list[list[str]]:
    """[[module name, docstring], ...] for the stdlib, then [_TOPICS, text] per help topic (subprocess side)."""
    import importlib
    import inspect
    import pkgutil
    import warnings

    warnings.simplefilter("ignore")

    def skipped(name: str) -> bool:
        parts = name.split(".")
        return (
            parts[0] in _SKIP
            or parts[0].startswith("turtle")
            or any(p.startswith("_") or p in ("test", "tests", "__main__") for p in parts)
        )

    modules = {}
    for top in sorted(sys.stdlib_module_names):
        if skipped(top):
            continue
        try:
            mod = importlib.import_module(top)
        except BaseException:  # noqa: B036 - any import failure (even SystemExit) just skips the module
            continue
        modules[top] = mod
        if hasattr(mod, "__path__"):
            for info in pkgutil.walk_packages(mod.__path__, top + ".", onerror=lambda _name: None):
                if skipped(info.name):
                    continue
                try:
                    modules[info.name] = importlib.import_module(info.name)
                except BaseException:  # noqa: B036
                    continue

    seen: set[str] = set()
    records: list[list[str]] = []

    def add(module: str, doc: object) -> None:
        if isinstance(doc, str):
            text = inspect.cleandoc(doc).strip()
            if text and text not in seen:
                seen.add(text)
                records.append([module, text])

    def public(name: str) -> bool:
        return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))

    for name in sorted(modules):
        mod = modules[name]
        add(name, mod.__doc__)
        for key, obj in sorted(vars(mod).items()):
            if key.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj):
                add(name, obj.__doc__)
                for member_name, member in sorted(vars(obj).items()):
                    if not public(member_name):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if (
                        inspect.isfunction(member)
                        or inspect.isbuiltin(member)
                        or inspect.ismethoddescriptor(member)
                        or isinstance(member, property)
                    ):
                        add(name, getattr(member, "__doc__", None))
            elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
                add(name, obj.__doc__)
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - some distributions strip it
        topics = {}
    for key in sorted(topics):
        add(_TOPICS, topics[key])
    return records


@functools.cache
def _records() -> tuple[tuple[str, str], ...]:
    """Run `_collect` in a clean subprocess (nothing it imports or prints reaches this process)."""
    fd, out = tempfile.mkstemp(prefix="mlm-pydocs-", suffix=".json")
    os.close(fd)
    try:
        subprocess.run(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), out],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=300,
        )
        with open(out, encoding="utf-8") as f:
            return tuple((m, d) for m, d in json.load(f))
    finally:
        os.unlink(out)


def pydocs_corpus() -> list[str]:
    """The sample corpus: stdlib docstrings then help-topic texts, deduplicated, in a fixed order (~1.7 MB)."""
    return [doc for _, doc in _records()]


def _split_of(text: str, seed: int) -> str:
    """train / validation / test (80/10/10) from a hash of the text, so the split never depends on order."""
    bucket = int.from_bytes(hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest(), "big") % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


@functools.cache
def _task_rows(seed: int) -> dict[str, tuple[list[str], list[str]]]:
    rows = [(m.split(".")[0], d) for m, d in _records() if m != _TOPICS and len(d) >= TASK_MIN_CHARS]
    counts = Counter(label for label, _ in rows)
    keep = {label for label, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TASK_LABELS]}
    splits: dict[str, tuple[list[str], list[str]]] = {s: ([], []) for s in ("train", "validation", "test")}
    for label, text in rows:
        if label in keep:
            texts, labels = splits[_split_of(text, seed)]
            texts.append(text)
            labels.append(label)
    return splits


def pydocs_task(seed: int = 0):  # -> datasets.DatasetDict (imported lazily: this file also runs bare)
    """Docstring -> top-level package classification over the 12 packages with most docstrings.

    Splits train/validation/test (~80/10/10) by a hash of `seed` and the text; columns `text`, `label` (str).
    """
    import datasets

    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"text": texts, "label": labels},
                features=datasets.Features(
                    {"text": datasets.Value("string"), "label": datasets.Value("string")}
                ),
            )
            for split, (texts, labels) in _task_rows(seed).items()
        }
    )


if __name__ == "__main__":  # the collection subprocess: python -I -S builtin.py OUT.json
    result = _collect()
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(result, f)
