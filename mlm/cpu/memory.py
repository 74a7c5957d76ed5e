"""glibc's malloc in CPU training: keep freed memory for reuse (`reuse_freed_memory`), give it back when the
process has grown (`release_freed_memory`, the `ReleaseFreedMemory` callback)."""

from __future__ import annotations

import os

from transformers import TrainerCallback

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # where glibc's dynamic threshold tops out (64-bit)


def _glibc():
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def reuse_freed_memory(enable: bool = True) -> bool:
    """CPU training: let glibc's malloc keep and reuse freed memory instead of returning it to the system.

    Every training step allocates and frees the same large tensors (the head's n_masked x vocab logits, their
    softmax and gradients: 75 MB each for 600 masked tokens and a 30k vocabulary). glibc serves each block
    over 32 MB with a fresh mmap and unmaps it on free, so every step page-faults, and the kernel zeroes,
    hundreds of MB. With mmap and trimming off, the blocks are reused. Process-wide; the memory stays with
    the process (its peak is kept). `enable=False` returns to glibc's usual steady state (32 MB mmap
    threshold) and gives the freed memory back. Returns False, changing nothing, where glibc is not the C
    library (macOS, Windows, musl)."""
    libc = _glibc()
    if libc is None:
        return False
    if enable:
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    else:
        ok = (
            libc.mallopt(_M_MMAP_MAX, 65536)
            and libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
            and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX)
        )
        libc.malloc_trim(0)
    return bool(ok)


def release_freed_memory() -> bool:
    """Give the pages of freed memory back to the system (glibc's `malloc_trim`), wherever they lie in the
    heap; the memory stays reserved for reuse. False, doing nothing, where glibc is not the C library."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def resident_bytes() -> int | None:
    """The memory this process holds in RAM now (Linux: /proc/self/statm); None where that is unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class ReleaseFreedMemory(TrainerCallback):
    """Give freed memory back to the system whenever the process has grown by `margin` bytes.

    A step's large tensors change size with the number of masked tokens in the batch, so the allocator's
    free memory fragments and the resident size creeps up step after step, never used again (on CPU, `tiny`
    with a 16k vocabulary: about 9 MB a step, 0.6 GB in 70 steps, with or without `cpu_reuse_memory`).
    The size at the end of the first step after a trim is the working set (with the step's freed memory,
    kept for the next step); once the process has grown `margin` past it, freed memory is given back (the
    next step then page-faults its memory in again, once in many steps). At the end of training, whatever
    training freed is given back."""

    def __init__(self, margin: int = 256 * 2**20) -> None:
        self.margin = margin
        self.working_set: int | None = None  # measured after the first step since the last trim
        self.trims = 0

    def _check(self) -> None:
        now = resident_bytes()
        if now is None:
            return
        if self.working_set is None:
            self.working_set = now
        elif now - self.working_set > self.margin:
            release_freed_memory()
            self.trims += 1
            self.working_set = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.working_set = None

    def on_step_end(self, args, state, control, **kwargs):
        self._check()

    def on_evaluate(self, args, state, control, **kwargs):
        self._check()

    def on_train_end(self, args, state, control, **kwargs):
        release_freed_memory()
