"""Helpers shared by the tests that run ngmixit as a process (no tests here)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def ngmixit(*args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """``python -m pipeline.cli.ngmixit ARGS``; raises with its stderr on failure."""
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli.ngmixit", *map(str, args)],
                          capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"ngmixit failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc


def kill_after_checkpoint(args: list, ckpt: Path, timeout: float = 300, **kw) -> None:
    """Start ngmixit with ``args``, SIGKILL it as soon as ``ckpt`` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.ngmixit", *map(str, args)],
                            stderr=subprocess.DEVNULL, **kw)
    deadline = time.monotonic() + timeout
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written"
