"""Waiting in tests: always on a condition with a deadline (the same helper the fakes and the demo use)."""

from sandbox.devtools.waiting import until

__all__ = ["until"]
