"""Restart safety: the real bot runs as its own process, is killed with SIGKILL mid-change, and started again.

The simulator and the fake Slack run in this test process; the bot is `python -m bot.cli run` with the settings of
a LocalStack turned into environment variables. After each kill the new process must finish the change with
exactly one change-OS POST in the simulator's log, and people must hear the end exactly once.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.domain.request import ChangeRequest, RequestState
from bot.slack import views
from bot.store import Store, open_store
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    GROUP_APPROVER,
    INCIDENT_CHANNEL,
    OPS_GROUP,
    REQUESTER,
    SIGNING_SECRET,
    LocalStack,
    StackOptions,
)
from sandbox.simulator.faults import FaultSpec
from sandbox.simulator.fixtures import Timing, load_fixtures
from sandbox.simulator.server import SimulatorServer
from tests.support.bot_process import BotProcess
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(60)

SPEED = 60.0
# At SPEED: a soft stop takes 2-2.5 s and a change 2-2.5 s, long enough for a kill to land in the middle (the kill
# follows the state it waits for within a poll of the store; a restart takes about a second).
TIMING = Timing(stop_soft=(120.0, 150.0), job_init=(3.0, 6.0), change_running=(120.0, 150.0))
CHANGE_ROUTES = ("change_os_v1", "change_os_v2")
ENDED = (RequestState.SUCCEEDED, RequestState.FAILED)


@dataclass
class Rig:
    """Simulator and fake Slack in this process, the bot in another, and a read connection to its database."""

    stack: LocalStack
    bot: BotProcess
    store: Store
    sender: sr.SlackSender

    @property
    def sim(self) -> SimulatorServer:
        return self.stack.sim

    async def restart(self) -> None:
        await self.bot.start()
        self.sender.events_url = self.bot.url + "/slack/events"

    async def request(self, request_id: str) -> ChangeRequest:
        found = await self.store.get(request_id)
        assert found is not None
        return found

    async def wait_for(
        self, request_id: str, check: Callable[[ChangeRequest], bool], what: str, timeout: float = 20.0
    ) -> ChangeRequest:
        async def probe() -> ChangeRequest | None:
            request = await self.request(request_id)
            return request if check(request) else None

        try:
            return await until(probe, timeout=timeout, what=f"{request_id}: {what}")
        except TimeoutError as exc:
            state = (await self.request(request_id)).state.value
            raise AssertionError(f"{exc} (state {state})\n{self.bot.tail()}") from None

    def change_posts(self) -> list[dict[str, Any]]:
        return [r for r in self.sim.requests if r["route"] in CHANGE_ROUTES]

    def changes_received(self) -> list[dict[str, Any]]:
        """Change-OS POSTs whose whole request reached the simulator (signature checked), answered or not."""
        return [r for r in self.change_posts() if "credential" in r]

    def add_faults(self, *specs: dict[str, Any]) -> None:
        for spec in specs:
            self.sim.faults.add(FaultSpec.model_validate(spec))

    # -------------------------------------------------------------- acting like Slack and its people

    async def request_change(self, text: str) -> str:
        """Slash command, plan modal, submit: the id of the request now waiting for approval."""
        fake = self.stack.slack
        body = sr.slash_command(text, user_id=REQUESTER, response_url=fake.response_url(secrets.token_hex(6)))
        response = await self.sender.send(body)
        assert response.status_code == 200, response.text
        call = await fake.wait_for("views.update", timeout=10)
        view = fake.views[call.body["view_id"]]
        values = sr.state_from_view(view, {})
        reply = await self.sender.send(sr.view_submission(user_id=REQUESTER, view=view, values=values))
        assert reply.status_code == 200 and reply.text == "", reply.text
        card = await fake.wait_until(
            lambda: next((m for m in fake.messages(APPROVALS_CHANNEL) if "cr_actions:" in str(m.blocks)), None),
            timeout=10,
            what="the approval card",
        )

        async def stored() -> ChangeRequest | None:
            return next((r for r in await self.store.live() if r.approval_ts == card.ts), None)

        request = await until(
            stored,
            timeout=5,
            what="the card's ts stored",
        )
        return request.id

    async def approve(self, request_id: str) -> None:
        fake = self.stack.slack
        request = await self.request(request_id)
        assert request.approval_ts is not None
        card = fake.message(APPROVALS_CHANNEL, request.approval_ts)
        body = sr.block_actions(
            user_id=APPROVER,
            action_id=views.APPROVE_ACTION,
            value=request_id,
            block_id=f"cr_actions:{request_id}",
            container="message",
            message=card.as_payload(),
            channel_id=card.channel,
            response_url=fake.response_url(secrets.token_hex(6)),
        )
        response = await self.sender.send(body)
        assert response.status_code == 200, response.text

    async def assert_finished_once(self, request_id: str) -> ChangeRequest:
        """Succeeded, the server runs the new image, one change-OS POST, and the end told exactly once."""
        final = await self.wait_for(request_id, lambda r: r.state in ENDED, "an end", timeout=30)
        assert final.state is RequestState.SUCCEEDED, f"{final.result}\n{self.bot.tail()}"
        server = self.sim.state.servers[final.server_id]
        assert server.image_id == final.target_image_id
        assert len(self.change_posts()) == 1, self.change_posts()
        fake = self.stack.slack

        def ends() -> list[str]:
            return [m.text for m in fake.messages(INCIDENT_CHANNEL) if request_id in m.text and "now runs" in m.text]

        def succeeded_replies() -> list[str]:
            assert final.approval_ts is not None
            thread = fake.thread(APPROVALS_CHANNEL, final.approval_ts)
            return [m.text for m in thread if "Succeeded" in m.text and "now runs" in m.text]

        await until(lambda: ends() and succeeded_replies(), timeout=10, what="the end in Slack")
        synced = await self.wait_for(request_id, lambda r: r.notified_state is RequestState.SUCCEEDED, "synced")
        assert synced.status_ts is not None
        status = fake.message(APPROVALS_CHANNEL, synced.status_ts)
        assert "Succeeded" in status.text, status.text
        assert len(ends()) == 1, ends()
        assert len(succeeded_replies()) == 1, succeeded_replies()
        return final


@contextlib.asynccontextmanager
async def running_rig(tmp_path: Path, options: StackOptions, timing: Timing = TIMING) -> AsyncIterator[Rig]:
    """A simulator and fake Slack in this process and the bot as a subprocess on them: the rig every restart test
    kills and starts again (single changes, backups, fleets)."""
    stack = LocalStack(options, workdir=tmp_path)
    stack.sim = SimulatorServer(load_fixtures().model_copy(update={"timing": timing}), speed=SPEED, seed=3)
    await stack.sim.start()
    await stack.slack.start()
    stack.slack.set_usergroup(OPS_GROUP, [GROUP_APPROVER])
    env = stack.settings().to_env()
    env["ECSBOT_LOG_LEVEL"] = "INFO"
    bot = BotProcess(env, tmp_path)
    store: Store | None = None
    sender: sr.SlackSender | None = None
    try:
        await bot.start()
        store = open_store(tmp_path / "ecsbot.db")
        sender = sr.SlackSender(bot.url + "/slack/events", SIGNING_SECRET)
        yield Rig(stack, bot, store, sender)
    finally:
        await bot.stop()
        if sender is not None:
            await sender.aclose()
        if store is not None:
            await store.aclose()
        await stack.slack.stop()
        await stack.sim.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    options = StackOptions(speed=SPEED, poll_interval=0.5, deadline=120.0, ecs_rate=50.0)
    async with running_rig(tmp_path, options) as rig:
        yield rig


async def test_settings_env_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The subprocess reads back exactly the settings the in-process stack would use."""
    stack = LocalStack(workdir=tmp_path)
    stack.sim.base_url = "http://127.0.0.1:9"
    async with stack.slack:
        settings = stack.settings()
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    again = Settings(_env_file=None)
    assert again.model_dump() == settings.model_dump()
    assert again.huaweicloud_sk is not None and settings.huaweicloud_sk is not None
    assert again.huaweicloud_sk.get_secret_value() == settings.huaweicloud_sk.get_secret_value()


async def test_kill_while_running_resumes_the_job(rig: Rig) -> None:
    request_id = await rig.request_change("db-01 ubuntu-22.04 --key ops-key --reason 'restart test (a)'")
    await rig.approve(request_id)
    running = await rig.wait_for(request_id, lambda r: r.state is RequestState.RUNNING, "running")
    assert running.job_id is not None
    await rig.bot.kill()
    assert rig.sim.state.jobs[running.job_id].status in ("INIT", "RUNNING")  # killed mid-job
    await rig.restart()
    final = await rig.assert_finished_once(request_id)
    assert final.job_id == running.job_id


async def test_kill_while_running_with_faults_on_the_job_route(rig: Rig) -> None:
    request_id = await rig.request_change("db-01 ubuntu-22.04 --key ops-key --reason 'restart test (a+faults)'")
    await rig.approve(request_id)
    running = await rig.wait_for(request_id, lambda r: r.state is RequestState.RUNNING, "running")
    rig.add_faults(
        {"route": "show_job", "burst_429": 3, "retry_after": 1},
        {"route": "show_job", "error_rate": 0.4, "status": 503, "code": "Common.0002"},
        {"route": "show_job", "latency_ms": 300},
    )
    await until(
        lambda: [r for r in rig.sim.requests if r["route"] == "show_job" and r["status"] in (429, 503)],
        timeout=10,
        what="a faulted job poll",
    )
    await rig.bot.kill()
    await rig.restart()
    final = await rig.assert_finished_once(request_id)
    assert final.job_id == running.job_id
    statuses = [r["status"] for r in rig.sim.requests if r["route"] == "show_job"]
    assert 429 in statuses and 503 in statuses, statuses  # the faults really hit the bot
    assert 200 in statuses


async def test_kill_while_reconciling_a_dropped_change_answer(rig: Rig) -> None:
    request_id = await rig.request_change("db-01 ubuntu-22.04 --key ops-key --reason 'restart test (b)'")
    # The change-OS POST is carried out but its answer is lost; reading the server is slowed so the kill lands
    # while the bot is still reconciling.
    rig.add_faults({"route": "change_os", "drop_response": 1}, {"route": "show_server", "latency_ms": 1500})
    await rig.approve(request_id)
    reconciling = await rig.wait_for(request_id, lambda r: r.state is RequestState.RECONCILING, "reconciling")
    assert reconciling.job_id is None and reconciling.submit_sent_at is not None
    assert [p.get("dropped") for p in rig.change_posts()] == [True]
    await rig.bot.kill()
    rig.sim.faults.clear()
    await rig.restart()
    final = await rig.assert_finished_once(request_id)
    assert final.job_id is None  # the job id never came back: the bot followed the server instead


async def test_kill_once_the_change_post_reached_the_cloud(rig: Rig) -> None:
    request_id = await rig.request_change("db-01 ubuntu-22.04 --key ops-key --reason 'restart test (b2)'")
    rig.add_faults({"route": "change_os", "latency_ms": 1200})  # the cloud holds the answer; the bot dies waiting
    await rig.approve(request_id)
    await until(rig.changes_received, timeout=15, what="the whole change-OS POST in the simulator")
    await rig.bot.kill()
    killed = await rig.request(request_id)
    assert killed.state is RequestState.SUBMITTING and killed.submit_sent_at is not None and killed.job_id is None
    rig.sim.faults.clear()
    await rig.restart()
    await rig.assert_finished_once(request_id)
    assert any(e.to_state is RequestState.RECONCILING for e in await rig.store.audit(request_id))


async def test_kill_while_stopping(rig: Rig) -> None:
    request_id = await rig.request_change("web-01 ubuntu-22.04 --key ops-key --reason 'restart test (c)'")
    assert (await rig.request(request_id)).stop_first
    await rig.approve(request_id)
    stopping = await rig.wait_for(
        request_id, lambda r: r.state is RequestState.STOPPING and r.stop_job_id is not None, "stopping"
    )
    assert rig.sim.state.servers[stopping.server_id].status == "ACTIVE"  # still powering off
    await rig.bot.kill()
    await rig.restart()
    await rig.assert_finished_once(request_id)
    stops = [r for r in rig.sim.requests if r["route"] == "server_action"]
    assert len(stops) == 1, stops
