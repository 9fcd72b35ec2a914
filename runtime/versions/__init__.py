"""Versions (README, Versions): invocations pinned to deployments, removal, moves, upgrade
checks."""
