"""One way to wait for a condition with a deadline: the fakes, the demo and the tests all use it, never a bare sleep."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Condition = Callable[[], T | None] | Callable[[], Awaitable[T | None]]


async def until(
    condition: Condition[T],
    *,
    timeout: float,  # noqa: ASYNC109 - the deadline is the point of this helper
    what: str,
    every: float = 0.02,
    changed: Callable[[], asyncio.Event] | None = None,
    detail: Callable[[], str] | None = None,
) -> T:
    """The first truthy result of `condition()` (awaited when it returns an awaitable, e.g. a store read).

    Re-checked every `every` seconds, and at once when the event `changed()` returns is set (a fake's traffic).
    After `timeout` seconds, one last check, then `TimeoutError` naming `what` (and `detail()`, when given).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = changed() if changed is not None else None
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0:
            extra = f"; {detail()}" if detail is not None else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        pause = min(every, remaining)
        if event is None:
            await asyncio.sleep(pause)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), pause)
