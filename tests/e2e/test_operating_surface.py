"""/metrics and /readyz scraped with a real HTTP client from a running stack (simulator + fake Slack + bot)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.app import build, serve
from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools.stack import APPROVER, LocalStack, StackOptions
from tests.e2e.conftest import submit_plan, wait_state

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def ready(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url + "/readyz")
    return response.status_code, response.json()


async def wait_ready(url: str, check: Callable[[int, dict[str, Any]], bool], what: str) -> tuple[int, dict[str, Any]]:
    """/readyz asked until `check` holds, within a deadline."""
    deadline = time.monotonic() + 10
    last = None
    while time.monotonic() < deadline:
        last = await ready(url)
        if check(*last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last /readyz: {last}")


async def test_metrics_move_as_a_change_flows_end_to_end(stack: LocalStack) -> None:
    _, before = await scrape(stack.url)
    request = await submit_plan(stack, "web-01 ubuntu-22.04 --key ops-key --reason 'kernel CVE'")
    await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
    final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert final.state is RequestState.SUCCEEDED, final.result
    text, after = await scrape(stack.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ecsbot_requests_submitted_total") == 1
    assert delta("ecsbot_approvals_total", by="approvers") == 1
    assert delta("ecsbot_requests_total", outcome="succeeded") == 1
    api = "v2" if final.cloud_init else "v1"
    assert delta("ecsbot_change_os_calls_total", api=api, result="accepted") == 1
    assert delta("ecsbot_cloud_calls_total", operation="change_os", status="200") == 1
    assert delta("ecsbot_cloud_calls_total", operation="get_job", status="200") >= 1
    assert delta("ecsbot_job_duration_seconds_count", outcome="succeeded") == 1
    assert delta("ecsbot_tracker_lag_seconds_count") >= 1
    assert delta("ecsbot_slack_calls_total", method="views.open", result="ok") == 1
    assert delta("ecsbot_slack_calls_total", method="chat.postMessage", result="ok") >= 1
    assert delta("ecsbot_ack_seconds_count", kind="command") == 1
    assert delta("ecsbot_ack_seconds_count", kind="view_submission") == 1
    assert delta("ecsbot_ack_seconds_count", kind="block_actions") == 1
    assert value(after, "ecsbot_tracker_leader") == 1
    assert "process_resident_memory_bytes" in text


async def test_no_label_carries_what_a_person_typed(stack: LocalStack) -> None:
    odd_server = 'odd"}{name\\x'
    odd_user = "U0DD}{bad"
    await stack.command(f"{odd_server} ubuntu-22.04")
    await stack.slack.wait_for("views.update", lambda c: c.ok)
    await stack.command("help", user=odd_user)
    text, samples = await scrape(stack.url)
    assert "odd" not in text and "U0DD" not in text and "bad" not in text
    allowed = {
        "operation": metrics.CLOUD_OPERATIONS | {metrics.OTHER},
        "method": metrics.SLACK_METHODS | {metrics.OTHER},
        "kind": set(metrics.ACK_KINDS),
        "outcome": set(metrics.OUTCOMES),
        "result": set(metrics.SLACK_RESULTS) | set(metrics.CHANGE_OS_RESULTS) | {metrics.OTHER},
        "api": {"v1", "v2"},
        "by": {"approvers", "self_service"},
    }
    for (name, labels), _ in samples.items():
        if not name.startswith("ecsbot_"):
            continue
        for label, label_value in labels:
            if label == "le":
                continue
            if label == "status":
                assert label_value == "unreachable" or label_value.isdigit(), (name, label_value)
                continue
            assert label_value in allowed[label], (name, label, label_value)
    assert value(samples, "ecsbot_cloud_calls_total", operation="list_servers") >= 1


async def test_readyz_names_slack_when_the_fake_slack_stops() -> None:
    async with LocalStack(StackOptions(extra_settings={"ready_cache_seconds": 0.2})) as stack:
        _, body = await wait_ready(stack.url, lambda s, b: s == 200, "ready")
        assert body == {
            "ready": True,
            "role": "leader",
            "failed": [],
            "checks": {"store": "ok", "cloud": "ok", "slack": "ok"},
        }
        async with httpx.AsyncClient() as http:
            health = (await http.get(stack.url + "/healthz")).json()
        assert health["ok"] is True and health["role"] == "leader"

        await stack.slack.stop()
        _, body = await wait_ready(stack.url, lambda s, b: s == 503, "not ready")
        assert body["failed"] == ["slack"], body
        assert body["checks"]["slack"].startswith("Slack cannot be reached"), body
        assert body["ready"] is False and body["role"] == "leader"
        async with httpx.AsyncClient() as http:
            assert (await http.get(stack.url + "/healthz")).status_code == 200  # liveness is not readiness


async def test_readyz_names_the_cloud_when_the_simulator_stops() -> None:
    async with LocalStack(StackOptions(extra_settings={"ready_cache_seconds": 0.2})) as stack:
        await wait_ready(stack.url, lambda s, b: s == 200, "ready")
        await stack.sim.stop()
        _, body = await wait_ready(stack.url, lambda s, b: s == 503, "not ready")
        assert body["failed"] == ["cloud"], body
        reason = body["checks"]["cloud"]  # refused at once, or (on a loaded machine) still retrying at the probe's end
        assert reason.startswith("the cloud cannot be reached") or reason == "no answer within 3 s", body


async def test_a_second_process_is_a_follower_and_says_so(stack: LocalStack, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.services.tracker")
    second = build(stack.settings(), tracker_config=stack.tracker_config(), notifier_options=stack.notifier_options())
    served = await serve(second, host="127.0.0.1", port=0)
    try:
        host, port = served.runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        _, body = await wait_ready(url, lambda s, b: s == 200, "the follower ready")
        assert body["role"] == "follower"
        async with httpx.AsyncClient() as http:
            assert (await http.get(url + "/healthz")).json()["role"] == "follower"
            assert (await http.get(stack.url + "/healthz")).json()["role"] == "leader"
        assert any("tracker: follower" in r.getMessage() for r in caplog.records)
    finally:
        await served.aclose()
        await second.aclose()


async def test_socket_mode_serves_metrics_only_on_its_own_port_when_asked() -> None:
    async with LocalStack(StackOptions(socket_mode=True)) as stack, httpx.AsyncClient() as http:
        assert (await http.get(stack.url + "/metrics")).status_code == 404
        assert (await http.get(stack.url + "/readyz")).status_code in (200, 503)
    async with LocalStack(StackOptions(socket_mode=True, extra_settings={"metrics_port": 0})) as stack:
        assert stack.served is not None and stack.served.metrics_runner is not None
        host, port = stack.served.metrics_runner.addresses[0][:2]
        _, samples = await scrape(f"http://{host}:{port}")
        assert ("ecsbot_live_jobs", frozenset()) in samples
        async with httpx.AsyncClient() as http:
            assert (await http.get(stack.url + "/metrics")).status_code == 404


async def test_http_mode_moves_metrics_to_its_own_port_when_asked() -> None:
    async with LocalStack(StackOptions(extra_settings={"metrics_port": 0})) as stack:
        assert stack.served is not None and stack.served.metrics_runner is not None
        host, port = stack.served.metrics_runner.addresses[0][:2]
        await scrape(f"http://{host}:{port}")
        async with httpx.AsyncClient() as http:
            assert (await http.get(stack.url + "/metrics")).status_code == 404
