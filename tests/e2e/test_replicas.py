"""Two bot processes on one PostgreSQL, one simulator, one fake Slack: any replica answers Slack, one tracks jobs.

Whatever happens to the replicas (approvals racing through both, the leader killed, frozen, both killed, the
database restarted), every change is posted to the cloud exactly once and its end is told exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.domain.request import ChangeRequest, RequestState
from bot.services.tracker import FOLLOWER_POLL_S
from bot.slack import texts, views
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
from sandbox.simulator.fixtures import load_fixtures
from sandbox.simulator.server import SimulatorServer
from tests.e2e.test_restart import CHANGE_ROUTES, SPEED, TIMING
from tests.postgres_server import PostgresServer
from tests.support.bot_process import BotProcess
from tests.support.waiting import until

# The replicas' ECSBOT_LEASE_SECONDS: short, so a takeover is quick to wait for. ECSBOT_TEST_LEASE_SECONDS=20 measures
# the takeover with the bot's default lease (the SIGSTOP test waits it out).
LEASE = float(os.environ.get("ECSBOT_TEST_LEASE_SECONDS", "3"))
pytestmark = pytest.mark.timeout(180 + 4 * LEASE)
SERVERS = ("web-01", "db-01")


@dataclass
class Cluster:
    stack: LocalStack
    bots: list[BotProcess]
    senders: list[sr.SlackSender]
    store: Store
    postgres: PostgresServer

    @property
    def sim(self) -> SimulatorServer:
        return self.stack.sim

    async def health(self, i: int) -> tuple[int, dict[str, Any]] | None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self.bots[i].url + "/healthz")
        except httpx.HTTPError:
            return None
        return response.status_code, response.json()

    async def role(self, i: int) -> str | None:
        found = await self.health(i)
        return found[1].get("role") if found else None

    async def wait_role(self, i: int, role: str, timeout: float = 20.0) -> None:
        async def has() -> bool:
            return await self.role(i) == role

        await until(has, timeout=timeout, what=f"replica {i} to be {role}", every=0.05)

    async def request_change(self, server: str, *, via: int) -> ChangeRequest:
        """Slash command and plan modal through replica `via`: the stored request with its approval card."""
        fake = self.stack.slack
        before = len(fake.calls)
        text = f"{server} ubuntu-22.04 --key ops-key --reason 'replica test'"
        body = sr.slash_command(text, user_id=REQUESTER, response_url=fake.response_url(secrets.token_hex(6)))
        response = await self.senders[via].send(body)
        assert response.status_code == 200, response.text
        call = await fake.wait_until(
            lambda: next((c for c in fake.calls[before:] if c.method == "views.update"), None),
            timeout=10,
            what=f"the plan of {server}",
        )
        view = fake.views[call.body["view_id"]]
        values = sr.state_from_view(view, {})
        reply = await self.senders[via].send(sr.view_submission(user_id=REQUESTER, view=view, values=values))
        assert reply.status_code == 200 and reply.text == "", reply.text

        async def carded() -> ChangeRequest | None:
            live = [r for r in await self.store.live() if r.server_name == server]
            return live[0] if live and live[0].approval_ts else None

        return await until(carded, timeout=10, what=f"the approval card of {server}")

    async def approve(self, request: ChangeRequest, *, user: str, via: int) -> httpx.Response:
        fake = self.stack.slack
        assert request.approval_ts is not None
        card = fake.message(APPROVALS_CHANNEL, request.approval_ts)
        body = sr.block_actions(
            user_id=user,
            action_id=views.APPROVE_ACTION,
            value=request.id,
            block_id=f"cr_actions:{request.id}",
            container="message",
            message=card.as_payload(),
            channel_id=card.channel,
            response_url=fake.response_url(secrets.token_hex(6)),
        )
        return await self.senders[via].send(body)

    async def start_changes(self) -> list[ChangeRequest]:
        """Both servers requested (one through each replica), approved, and the first change-OS POST made."""
        requests = [await self.request_change(server, via=i) for i, server in enumerate(SERVERS)]
        for request in requests:
            assert (await self.approve(request, user=APPROVER, via=0)).status_code == 200
        await until(self.change_posts, timeout=30, what="a change-OS POST")
        return requests

    def change_posts(self, server_id: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.sim.requests
            if r["route"] in CHANGE_ROUTES and (server_id is None or server_id in r["path"])
        ]

    async def assert_each_changed_once(self, requests: list[ChangeRequest], timeout: float = 60.0) -> None:
        """Every request succeeded, one change-OS POST per server, one end post each and one Succeeded reply."""
        fake = self.stack.slack
        for request in requests:

            async def ended(rid: str = request.id) -> ChangeRequest | None:
                current = await self.store.get(rid)
                return current if current and current.is_terminal and current.notified_state is current.state else None

            final = await until(ended, timeout=timeout, what=f"{request.id} to end and be told")
            assert final.state is RequestState.SUCCEEDED, f"{final.result}\n{self.tails()}"
            assert len(self.change_posts(final.server_id)) == 1, self.change_posts(final.server_id)
            ends = [m for m in fake.messages(INCIDENT_CHANNEL) if request.id in m.text and "now runs" in m.text]
            assert len(ends) == 1, [m.text for m in ends]
            assert final.approval_ts is not None
            thread = fake.thread(APPROVALS_CHANNEL, final.approval_ts)
            replies = [m for m in thread if "Succeeded" in m.text and "now runs" in m.text]
            assert len(replies) == 1, [m.text for m in replies]
            moves = [e.to_state for e in await self.store.audit(request.id) if e.to_state is not None]
            assert moves.count(RequestState.APPROVED) == 1 and moves.count(RequestState.SUCCEEDED) == 1, moves

    def tails(self) -> str:
        return "\n".join(f"--- replica {i}\n{bot.tail(30)}" for i, bot in enumerate(self.bots))


@pytest.fixture
async def cluster(tmp_path: Path, postgres: PostgresServer) -> AsyncIterator[Cluster]:
    options = StackOptions(speed=SPEED, poll_interval=0.5, deadline=120.0, ecs_rate=50.0)
    stack = LocalStack(options, workdir=tmp_path)
    stack.sim = SimulatorServer(load_fixtures().model_copy(update={"timing": TIMING}), speed=SPEED, seed=5)
    await stack.sim.start()
    await stack.slack.start()
    stack.slack.set_usergroup(OPS_GROUP, [GROUP_APPROVER])
    url = postgres.fresh_url()
    env = {
        **stack.settings().to_env(),
        "ECSBOT_LOG_LEVEL": "INFO",
        "ECSBOT_DATABASE_URL": url,
        "ECSBOT_LEASE_SECONDS": str(LEASE),
    }
    bots = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        bots.append(BotProcess(env, tmp_path / name))
    senders: list[sr.SlackSender] = []
    store: Store | None = None
    try:
        await bots[0].start()  # the first one leads
        await bots[1].start(leader=False)
        store = open_store(url)
        senders = [sr.SlackSender(bot.url + "/slack/events", SIGNING_SECRET) for bot in bots]
        cluster = Cluster(stack, bots, senders, store, postgres)
        assert await cluster.role(0) == "leader" and await cluster.role(1) == "follower"
        yield cluster
    finally:
        for bot in bots:
            if bot.proc is not None and bot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    bot.proc.send_signal(signal.SIGCONT)  # a frozen one must be able to stop
            await bot.stop()
        for sender in senders:
            await sender.aclose()
        if store is not None:
            await store.aclose()
        await stack.slack.stop()
        await stack.sim.stop()


async def test_approvals_racing_through_two_replicas_make_one_change_each(cluster: Cluster) -> None:
    requests = [await cluster.request_change(server, via=i) for i, server in enumerate(SERVERS)]
    for request in requests:
        answers = await asyncio.gather(
            cluster.approve(request, user=APPROVER, via=0),
            cluster.approve(request, user=GROUP_APPROVER, via=1),  # another approver, through the other replica
            cluster.approve(request, user=APPROVER, via=1),  # the same click again, through the other replica
        )
        assert [a.status_code for a in answers] == [200, 200, 200]
    await cluster.assert_each_changed_once(requests)


async def test_the_leader_killed_while_jobs_run_the_follower_takes_over(cluster: Cluster) -> None:
    requests = await cluster.start_changes()
    killed = time.monotonic()
    await cluster.bots[0].kill()
    await cluster.wait_role(1, "leader", timeout=LEASE + FOLLOWER_POLL_S + 10)
    takeover = time.monotonic() - killed
    print(f"\ntakeover after SIGKILL: {takeover:.2f} s (lease {LEASE:g} s)")
    # Same host: the dead pid is seen at the next poll, without waiting out the lease.
    assert takeover <= LEASE + FOLLOWER_POLL_S + 2.0, takeover
    await cluster.assert_each_changed_once(requests)
    assert await cluster.store.lease_epoch("tracker") == 2  # one takeover, no flapping


async def test_a_frozen_leader_loses_the_lease_and_never_posts_again(cluster: Cluster) -> None:
    """SIGSTOP: the leader's process lives on (a paused VM, a partition), so the follower waits the lease out. When
    the old leader wakes, it finds the lease taken and follows; its half-done steps post nothing."""
    requests = await cluster.start_changes()
    frozen = cluster.bots[0].proc
    assert frozen is not None
    stopped = time.monotonic()
    frozen.send_signal(signal.SIGSTOP)
    await cluster.wait_role(1, "leader", timeout=LEASE + FOLLOWER_POLL_S + 10)
    takeover = time.monotonic() - stopped
    print(f"\ntakeover after SIGSTOP: {takeover:.2f} s (lease {LEASE:g} s)")
    assert LEASE / 3 <= takeover <= LEASE + FOLLOWER_POLL_S + 2.0, takeover
    frozen.send_signal(signal.SIGCONT)
    await cluster.wait_role(0, "follower", timeout=LEASE + 5)
    await cluster.assert_each_changed_once(requests)
    assert await cluster.role(1) == "leader"


async def test_both_killed_then_one_restarted_resumes_everything(cluster: Cluster) -> None:
    requests = await cluster.start_changes()
    await asyncio.gather(cluster.bots[0].kill(), cluster.bots[1].kill())
    await cluster.bots[1].start()  # waits until it leads: the dead holder's lease is taken over
    cluster.senders[1].events_url = cluster.bots[1].url + "/slack/events"
    await cluster.assert_each_changed_once(requests)


async def test_the_database_restarted_under_load_loses_nothing_and_users_are_told(cluster: Cluster) -> None:
    requests = await cluster.start_changes()
    cluster.postgres.stop()
    try:

        async def refusing() -> bool:
            found = await cluster.health(1)
            return found is not None and found[0] == 200 and found[1]["database"]["state"] == "unreachable"

        await until(refusing, timeout=30, what="replica 1 to report the database unreachable", every=0.1)
        fake = cluster.stack.slack
        body = sr.slash_command(
            "web-01 ubuntu-24.04-cloudinit --key ops-key --reason 'while the database is down'",
            user_id=REQUESTER,
            response_url=fake.response_url(secrets.token_hex(6)),
        )
        answer = await cluster.senders[1].send(body)
        assert answer.status_code == 200 and answer.json()["text"] == texts.DATABASE_DOWN, answer.text
    finally:
        cluster.postgres.start()
    for i in (0, 1):

        async def healthy(i: int = i) -> bool:
            found = await cluster.health(i)
            return found is not None and found[0] == 200

        await until(healthy, timeout=30, what=f"replica {i} healthy again", every=0.1)
    await cluster.assert_each_changed_once(requests)
    assert {r.id for r in await cluster.store.in_states(*RequestState)} == {r.id for r in requests}
