"""Shared plumbing for the command-line tools: logging and error reporting."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from ..errors import PipelineError
from ..interrupts import Interrupted

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging threshold (default INFO)")


def setup_logging(level: str = "INFO", logfile: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile))
    logging.basicConfig(level=getattr(logging, level), format=LOG_FORMAT,
                        handlers=handlers, force=True)


def run_cli(main: Callable[[Sequence[str] | None], int | None],
            argv: Sequence[str] | None = None) -> int:
    """Run ``main``; report a ``PipelineError`` as one line on stderr, exit 2."""
    try:
        code = main(argv)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"error: interrupted by {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        # disk full, permission denied, ...: the path and the reason, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    return int(code or 0)
