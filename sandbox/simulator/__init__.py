"""A faithful local Huawei Cloud (ECS, IMS, EVS and jobs) with real signature checks, timing and faults."""

from sandbox.simulator.clock import ManualClock, SystemClock
from sandbox.simulator.fixtures import FixtureError, Fixtures, load_fixtures
from sandbox.simulator.server import SimulatorServer, run_forever

__all__ = [
    "FixtureError",
    "Fixtures",
    "ManualClock",
    "SimulatorServer",
    "SystemClock",
    "load_fixtures",
    "run_forever",
]
