"""The fixtures file: the default has everything the bot, its tests and the demo rely on; bad files say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.simulator import FixtureError, SimulatorServer, load_fixtures
from sandbox.simulator.fixtures import REPO_FIXTURES, default_fixtures_path


def test_default_fixtures_have_the_agreed_servers_images_and_keys() -> None:
    fixtures = load_fixtures()
    assert default_fixtures_path() == REPO_FIXTURES
    sim = fixtures.simulator
    assert (sim.project_id, sim.access_key, sim.user_id) == (
        "0605767ef600d5762f23c013c6e7ad23",
        "SIMULATORAK000000000",
        "7e25b1da389f4697a79df3a0e5bd494e",
    )
    assert sim.secret_key.get_secret_value() == "simulator-secret-key-0000000000000000000"
    assert "simulator-secret" not in repr(fixtures)
    names = [s.name for s in fixtures.servers]
    for name in ("web-01", "db-01", "locked-01", "nodisk-01", "win-01", "failed-01", "small-01"):
        assert names.count(name) == 1
    assert names.count("app-01") == 2
    images = {i.name: i for i in fixtures.images}
    assert images["ubuntu-22.04"].support_fc_inject == "true" and images["ubuntu-22.04"].min_disk == 40
    assert images["ubuntu-24.04-cloudinit"].support_fc_inject in (None, "false")
    assert images["windows-2022"].os_type == "Windows"
    assert images["centos-7-old"].status != "active"
    assert images["rocky-9-large"].min_disk == 100
    owners = {k.name: k.owner for k in fixtures.keypairs}
    other = "0b6d7e4b2c1a4f0e9d8c7b6a5f4e3d2c"
    assert owners == {"ops-key": sim.user_id, "deploy-key": sim.user_id, "alice-key": other}
    assert images["hce-2.0-arm"].architecture == "arm" and images["hce-2.0-arm"].hw_firmware_type == "uefi"
    arm = next(s for s in fixtures.servers if s.name == "arm-01")
    assert arm.flavor.startswith("kc1.") and arm.image_id == images["hce-2.0-arm"].id
    assert fixtures.catalogue.size >= 2000, "the default catalogue is a realistic region"
    small = next(s for s in fixtures.servers if s.name == "small-01")
    assert [v.size for v in small.volumes if v.boot_index == "0"] == [20]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[servers]]\nid = 'x'\nname = 'x'\nimage_id = 'nope'\n", "not in [[images]]"),
        ("[simulator]\nprojct_id = 'x'\n", "projct_id"),
        ("[timing]\nstop_soft = [40, 20]\n", "timing.stop_soft"),
        ("[[servers]]\nname = 'x'\n", "servers.0.id"),
        ("this is = = not toml", "not valid TOML"),
        ("[[faults]]\nroute = 'everything'\nerror_rate = 1\n", "unknown route"),
    ],
)
def test_bad_fixtures_say_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FixtureError) as caught:
        load_fixtures(path)
    assert needle in str(caught.value) and "Traceback" not in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="cannot read fixtures file"):
        SimulatorServer(tmp_path / "absent.toml")
