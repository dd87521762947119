"""The bot's Prometheus metrics: one registry, the metric families, and helpers that keep every label in a fixed set.

Hooks are one call where the event happens (the cloud client, the store, the tracker, the Slack edge and client).
No label carries a user-controlled string: operations and Slack methods come from fixed lists here (anything else
reads "other"), outcomes are request states, statuses are HTTP codes. Server names, user ids and request ids never
become labels. docs/operations.md lists every metric.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from bot.domain.request import TERMINAL_STATES, RequestState

# The classic text format, which every Prometheus reads; our names need nothing newer (UTF-8 names are 1.0.0's).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # memory, CPU, open files: the usual process_* series

OTHER = "other"
CLOUD_OPERATIONS = frozenset(
    {
        "get_server",
        "list_servers",
        "servers_by_tag",
        "list_keypairs",
        "list_images",
        "flavor_extra_specs",
        "get_volume",
        "get_job",
        "stop_server",
        "change_os",
    }
)
SLACK_METHODS = frozenset(
    {
        "auth.test",
        "chat.postMessage",
        "chat.update",
        "chat.delete",
        "chat.postEphemeral",
        "chat.getPermalink",
        "views.open",
        "views.update",
        "views.push",
        "usergroups.users.list",
        "users.info",
        "conversations.open",
        "apps.connections.open",
        "openid.connect.token",
        "openid.connect.userInfo",
        "response_url",  # a slash command's follow-up, posted to its response_url
    }
)
SLACK_RESULTS = ("ok", "error", "ratelimited", "unreachable")
ACK_KINDS = ("command", "block_actions", "view_submission", "view_closed", "block_suggestion", OTHER)
OUTCOMES = tuple(sorted(state.value for state in TERMINAL_STATES))
CHANGE_OS_RESULTS = ("accepted", "refused", "unknown", "unreachable")

REQUESTS_SUBMITTED = Counter(
    "ecsbot_requests_submitted", "Change requests stored (the form was submitted and passed).", registry=REGISTRY
)
REQUESTS = Counter("ecsbot_requests", "Change requests that ended, by outcome.", ["outcome"], registry=REGISTRY)
APPROVALS = Counter(
    "ecsbot_approvals",
    "Change requests approved, by who decided (approvers, or self_service by the policy).",
    ["by"],
    registry=REGISTRY,
)
CHANGE_OS = Counter(
    "ecsbot_change_os_calls",
    "Change-OS POSTs by API version (v1, or v2 for Cloud-Init images) and result.",
    ["api", "result"],
    registry=REGISTRY,
)
LIVE_JOBS = Gauge(
    "ecsbot_live_jobs", "Requests the tracker is driving (approved and not yet ended).", registry=REGISTRY
)
JOB_SECONDS = Histogram(
    "ecsbot_job_duration_seconds",
    "From the first POST to the cloud (stop or change OS) to the end of the job, by outcome.",
    ["outcome"],
    buckets=(30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200),
    registry=REGISTRY,
)
TRACKER_LAG = Histogram(
    "ecsbot_tracker_lag_seconds",
    "How late the tracker starts a request's step after it was due.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
TRACKER_LEADER = Gauge(
    "ecsbot_tracker_leader",
    "1 while this process holds the tracker lease (leader), 0 on a follower.",
    registry=REGISTRY,
)
CLOUD_CALLS = Counter(
    "ecsbot_cloud_calls",
    "Signed Huawei Cloud requests by operation and HTTP status (unreachable: no answer), each attempt counted.",
    ["operation", "status"],
    registry=REGISTRY,
)
CLOUD_RETRIES = Counter(
    "ecsbot_cloud_retries",
    "Cloud requests sent again after a throttle, a 5xx or a dropped connection.",
    ["operation"],
    registry=REGISTRY,
)
SLACK_CALLS = Counter(
    "ecsbot_slack_calls",
    "Slack Web API calls (and response_url posts) by method and result; ratelimited is Slack's 429.",
    ["method", "result"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "ecsbot_ack_seconds",
    "From a Slack request reaching the edge to the answer going back (Slack allows 3 s), by payload kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
    registry=REGISTRY,
)

# Children bound once: the ack path pays a dict lookup, not a label lookup under the family's lock.
_ACK = {kind: ACK_SECONDS.labels(kind=kind) for kind in ACK_KINDS}
for _outcome in OUTCOMES:
    REQUESTS.labels(outcome=_outcome)
for _by in ("approvers", "self_service"):
    APPROVALS.labels(by=_by)
for _api in ("v1", "v2"):
    for _result in CHANGE_OS_RESULTS:
        CHANGE_OS.labels(api=_api, result=_result)


def exposition() -> tuple[bytes, str]:
    """The text a Prometheus scrape gets, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE


def ack(kind: object, seconds: float) -> None:
    _ACK.get(kind if isinstance(kind, str) else OTHER, _ACK[OTHER]).observe(seconds)


def cloud_call(operation: str, status: int | None) -> None:
    """One signed exchange; `status` None when no answer came (connection refused, timeout, dropped)."""
    CLOUD_CALLS.labels(operation=_cloud_operation(operation), status=_status(status)).inc()


def cloud_retry(operation: str) -> None:
    CLOUD_RETRIES.labels(operation=_cloud_operation(operation)).inc()


def change_os(cloud_init: bool, result: str) -> None:
    CHANGE_OS.labels(api="v2" if cloud_init else "v1", result=result if result in CHANGE_OS_RESULTS else OTHER).inc()


def slack_call(method: str, result: str) -> None:
    method = method if method in SLACK_METHODS else OTHER
    SLACK_CALLS.labels(method=method, result=result if result in SLACK_RESULTS else OTHER).inc()


def request_stored() -> None:
    REQUESTS_SUBMITTED.inc()


def request_moved(to: RequestState, *, self_service: bool) -> None:
    """A guarded transition landed: an approval, or an end (its outcome)."""
    if to is RequestState.APPROVED:
        APPROVALS.labels(by="self_service" if self_service else "approvers").inc()
    elif to in TERMINAL_STATES:
        REQUESTS.labels(outcome=to.value).inc()


def job_ended(outcome: RequestState, seconds: float) -> None:
    JOB_SECONDS.labels(outcome=outcome.value).observe(max(0.0, seconds))


def _cloud_operation(operation: str) -> str:
    return operation if operation in CLOUD_OPERATIONS else OTHER


def _status(status: int | None) -> str:
    if status is None:
        return "unreachable"
    return str(status) if 100 <= status <= 599 else OTHER
