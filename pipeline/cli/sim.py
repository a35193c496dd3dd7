"""Simulate a survey tile as MEDS files."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .common import add_log_level, not_implemented, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Simulate a survey tile as MEDS files (not implemented yet).")
    add_log_level(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return not_implemented("sim")


def entry() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
