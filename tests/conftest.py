"""Shared pytest fixtures: the real single-node SLURM cluster (tests/slurm)."""

from tests.slurm.fixtures import slurm_cluster  # noqa: F401
