"""Workflows: deterministic orchestration only; every side effect is an activity."""
