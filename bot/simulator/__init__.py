"""A faithful local Huawei Cloud (ECS, IMS, EVS and jobs) with real signature checks, timing and faults."""

from bot.simulator.clock import ManualClock, SystemClock
from bot.simulator.fixtures import FixtureError, Fixtures, load_fixtures
from bot.simulator.server import SimulatorServer, run_forever

__all__ = [
    "FixtureError",
    "Fixtures",
    "ManualClock",
    "SimulatorServer",
    "SystemClock",
    "load_fixtures",
    "run_forever",
]
