"""Command-line entry points (argparse)."""
