"""Graceful SIGINT/SIGTERM for long fitting runs.

The first signal only sets a flag: the group being fitted finishes (a signal
raised inside a numba kernel would otherwise surface as an ordinary exception
and be recorded as a failed fit), then the driver writes a checkpoint and
exits 130 (SIGINT) or 143 (SIGTERM). A second signal stops at once with
``KeyboardInterrupt``; code that turns exceptions into fit flags calls
:func:`reraise_if_interrupted` first, so an interrupt is never recorded as a
failed object.
"""

from __future__ import annotations

import logging
import signal
import threading

logger = logging.getLogger(__name__)

_received: list[int] = []


class Interrupted(Exception):
    """Raised by the driver after it saved its work on a signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def requested() -> int | None:
    """The first signal received while :class:`graceful` is active, else None."""
    return _received[0] if _received else None


def reraise_if_interrupted(err: BaseException) -> None:
    """Turn an exception caught during a fit into ``KeyboardInterrupt`` if a signal
    arrived (a signal inside a numba call surfaces as a ``SystemError``)."""
    if _received or isinstance(err, KeyboardInterrupt):
        raise KeyboardInterrupt from err


def _handler(signum, frame) -> None:
    if _received:
        raise KeyboardInterrupt
    _received.append(signum)
    logger.warning("%s received: finishing the current group, then saving a checkpoint "
                   "(send it again to stop at once)", signal.Signals(signum).name)


class graceful:
    """Context manager installing the handlers (main thread only; a no-op elsewhere)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "graceful":
        _received.clear()
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, _handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        _received.clear()
