"""Wave specs (`1,10%,rest`): their syntax, and how they cut an ordered fleet into waves, canary first.

Pure. The syntax is checked when the command is typed; the sizes only when the fleet is resolved, because a
percentage needs the fleet's size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_WAVES = "1,10%,rest"
MAX_WAVES = 20

_COUNT = re.compile(r"^\d+$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


class WaveError(ValueError):
    """A wave spec that cannot be used; the message says what to write instead."""


@dataclass(frozen=True, slots=True)
class Wave:
    """One item of a spec: `count` servers, `percent` of the fleet, or the `rest`."""

    count: int | None = None
    percent: float | None = None

    @property
    def rest(self) -> bool:
        return self.count is None and self.percent is None

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        if self.percent is not None:
            return f"{self.percent:g}%"
        return "rest"


_EXAMPLE = "Write the wave sizes in order, e.g. --waves 1,10%,rest (one canary, then 10% of the fleet, then the rest)."


def parse_waves(text: str) -> tuple[Wave, ...]:
    """`1,10%,rest` → waves. Raises WaveError with a sentence for every mistake."""
    items = [part.strip().lower() for part in text.replace(" ", ",").split(",")]
    items = [item for item in items if item]
    if not items:
        raise WaveError(f"--waves needs at least one wave. {_EXAMPLE}")
    if len(items) > MAX_WAVES:
        raise WaveError(f"--waves has {len(items)} waves; at most {MAX_WAVES} are allowed. {_EXAMPLE}")
    waves: list[Wave] = []
    for index, item in enumerate(items):
        if item in ("rest", "all"):
            if index != len(items) - 1:
                raise WaveError(f"“{item}” must be the last wave: it takes every server left. {_EXAMPLE}")
            waves.append(Wave())
        elif _COUNT.match(item):
            count = int(item)
            if count == 0:
                raise WaveError(f"A wave of 0 servers does nothing; give 1 or more. {_EXAMPLE}")
            waves.append(Wave(count=count))
        elif m := _PERCENT.match(item):
            percent = float(m.group(1))
            if percent == 0:
                raise WaveError(f"A wave of 0% has no servers; give a percentage above 0, e.g. 10%. {_EXAMPLE}")
            if percent > 100:
                raise WaveError(f"A wave of {item} is more than the whole fleet; use at most 100%. {_EXAMPLE}")
            waves.append(Wave(percent=percent))
        else:
            shown = item if len(item) <= 20 else item[:19] + "…"
            raise WaveError(f"“{shown}” is not a wave size: use a number, a percentage or rest. {_EXAMPLE}")
    return tuple(waves)


def wave_sizes(waves: Sequence[Wave], fleet_size: int) -> list[int]:
    """How many servers each wave takes, in order; every server is in exactly one wave.

    A percentage is of the whole fleet, rounded up (so 10% of 12 is 2), and takes at most what is left; a wave
    with nothing left is dropped, so the default `1,10%,rest` works for a fleet of 1. An explicit count larger than
    what is left is an error, as is a spec that leaves servers out (end it with `rest`).
    """
    if fleet_size < 1:
        raise WaveError("The fleet is empty: no server matched, so there is nothing to roll out.")
    sizes: list[int] = []
    left = fleet_size
    for wave in waves:
        if wave.count is not None:
            if wave.count > left:
                done = fleet_size - left
                raise WaveError(
                    f"The waves ask for more servers than the fleet has: wave {len(sizes) + 1} wants {wave.count}, "
                    f"but the fleet has {fleet_size} and {done} are in earlier waves. Use a smaller count, a "
                    "percentage, or rest."
                )
            size = wave.count
        elif wave.percent is not None:
            size = min(left, max(1, math.ceil(fleet_size * wave.percent / 100 - 1e-9)))
        else:
            size = left
        if size:
            sizes.append(size)
            left -= size
    if left:
        spec = ",".join(str(w) for w in waves)
        raise WaveError(
            f"The waves {spec} cover {fleet_size - left} of the {fleet_size} servers and leave {left} out. "
            f"End them with rest, e.g. --waves {spec},rest."
        )
    return sizes


def cut(server_ids: Sequence[str], waves: Sequence[Wave]) -> list[list[str]]:
    """The ordered fleet cut into waves: the first servers are the canaries."""
    out: list[list[str]] = []
    start = 0
    for size in wave_sizes(waves, len(server_ids)):
        out.append(list(server_ids[start : start + size]))
        start += size
    return out
