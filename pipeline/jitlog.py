"""Numba compilation as it happens: one log line on a cold compile, and a record
of every kernel specialisation compiled (name, signature, seconds).

numba fires its ``numba:compile`` event only when it compiles a specialisation
(a cache miss), never when it loads machine code from the cache. Listening to
that event costs nothing on a warm cache and cannot raise a false alarm there.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from numba.core import config as numba_config
from numba.core import event

logger = logging.getLogger(__name__)

#: Cold compile of the kernels a fit config uses, measured by bench/coldstart.py
#: (one core of the development machine); the log line quotes it.
COLD_COMPILE_SECONDS = "15-45"

_COMPILE_EVENT = "numba:compile"
_LLVM_EVENT = "numba:llvm_lock"


@dataclass(frozen=True)
class Compiled:
    """One compiled specialisation."""

    name: str            # module.qualname of the Python function
    signature: str       # argument types
    seconds: float       # wall time, including the callees compiled for it
    self_seconds: float  # excluding them
    llvm_seconds: float  # of which LLVM optimisation and code generation (numba's timer)


def _kernel_name(dispatcher) -> str:
    func = dispatcher.py_func
    return f"{func.__module__}.{func.__qualname__}"


def cache_folder(dispatcher=None) -> str:
    """The folder numba caches machine code in: NUMBA_CACHE_DIR, else the one it
    chose for ``dispatcher`` (``__pycache__`` beside the source, or a user folder)."""
    if numba_config.CACHE_DIR:
        return os.path.abspath(numba_config.CACHE_DIR)
    cache = getattr(dispatcher, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    if path:
        return os.path.dirname(os.path.abspath(path)) if path.endswith("__pycache__") else path
    return "numba's default cache folder"


class CompileRecorder(event.Listener):
    """Records the specialisations numba compiles while registered; nested
    compiles (callees typed for a caller) are recorded too."""

    def __init__(self) -> None:
        self.compiled: list[Compiled] = []
        self.seconds = 0.0                    # wall time of the outermost compiles
        self._open: list[list[float]] = []   # [start, seconds of children, LLVM seconds]
        self._llvm = _LLVMTimer(self._open)

    def on_start(self, ev) -> None:
        self._open.append([time.perf_counter(), 0.0, 0.0])

    def on_end(self, ev) -> None:
        start, children, llvm = self._open.pop()
        seconds = time.perf_counter() - start
        if self._open:
            self._open[-1][1] += seconds
        else:
            self.seconds += seconds
        data = ev.data
        self.compiled.append(Compiled(_kernel_name(data["dispatcher"]), str(tuple(data["args"])),
                                      seconds, seconds - children, llvm))

    def __enter__(self) -> "CompileRecorder":
        event.register(_COMPILE_EVENT, self)
        event.register(_LLVM_EVENT, self._llvm)
        return self

    def __exit__(self, *exc) -> None:
        event.unregister(_LLVM_EVENT, self._llvm)
        event.unregister(_COMPILE_EVENT, self)


class _LLVMTimer(event.Listener):
    """Adds the time numba holds its LLVM lock to the innermost open compile."""

    def __init__(self, open_compiles: list) -> None:
        self._open = open_compiles
        self._start = 0.0

    def on_start(self, ev) -> None:
        self._start = time.perf_counter()

    def on_end(self, ev) -> None:
        if self._open:
            self._open[-1][2] += time.perf_counter() - self._start


class _ColdCompileLog(event.Listener):
    """Logs one line at the first compile of the process."""

    def __init__(self) -> None:
        self.done = False

    def on_start(self, ev) -> None:
        # stays registered: unregistering while numba broadcasts the event
        # would skip the next listener
        if self.done:
            return
        self.done = True
        folder = cache_folder(ev.data["dispatcher"])
        logger.info("compiling numba kernels (first run with cache folder %s; ~%s s, "
                    "cached for later runs)", folder, COLD_COMPILE_SECONDS)

    def on_end(self, ev) -> None:
        pass


_cold_log: _ColdCompileLog | None = None


def log_cold_compiles() -> None:
    """Log one line the first time this process compiles a numba kernel (idempotent)."""
    global _cold_log
    if _cold_log is None:
        _cold_log = _ColdCompileLog()
        event.register(_COMPILE_EVENT, _cold_log)
