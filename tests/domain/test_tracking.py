"""The tracker's pure core, table by table: every phase, job shape and fault, and the exact decision for each."""

from __future__ import annotations

import ast
import inspect
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.cloud import CloudAPIError, CloudUnreachableError, Job, OutcomeUnknownError, ThrottledError, hint_for
from bot.domain import backup as bk
from bot.domain.request import ChangeRequest, LoginMethod, RequestState, StopType
from bot.domain.tracking import (
    CLOUD_CALLS,
    DRIVEN,
    JOB_GONE,
    MAX_SUBMIT_ATTEMPTS,
    MISSING_USER_ID,
    PAYMENT_PROGRESS,
    Audit,
    BackupJobSeen,
    BackupJobView,
    BackupsFound,
    BackupView,
    BuildChange,
    ChangeInvalid,
    ChangeReady,
    Decision,
    Due,
    Effect,
    Fail,
    Fault,
    FaultKind,
    FindBackup,
    ForgetPassword,
    JobSeen,
    JobView,
    Log,
    Move,
    Note,
    Observation,
    OutcomeUnknown,
    PasswordGone,
    PostBackup,
    PostChange,
    Posted,
    PostStart,
    PostStop,
    Presenter,
    ReadBackupJob,
    ReadJob,
    ReadServer,
    Schedule,
    ServerSeen,
    ServerView,
    Succeed,
    Tell,
    TrackerConfig,
    UnexpectedObservation,
    Update,
    backoff,
    failure_text,
    progress_text,
    step,
)
from bot.services.tracker import fault_of, job_view
from tests.support.requests import change_request

S = RequestState
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CFG = TrackerConfig()  # poll 10 s, first poll 2 s, deadline 1800 s, overdue x6, backoff <= 300 s, grace 60 s
USER = "user-1"
TARGET = "img-new"
OLD = "img-old"
LOCKED_HINT = hint_for("Ecs.0605")


def req(state: RequestState, **fields: Any) -> ChangeRequest:
    names = {"id": "CR-ABCDEF", "server_name": "web-1", "target_image_id": TARGET, "target_image_name": "Ubuntu 24.04"}
    return change_request(state=state, **{**names, **fields})


def server(status: str = "SHUTOFF", task_state: str | None = None, image_id: str | None = OLD) -> ServerView:
    return ServerView(status, task_state, image_id)


def seen(status: str = "SHUTOFF", task_state: str | None = None, image_id: str | None = OLD, **kw: Any) -> ServerSeen:
    return ServerSeen(server(status, task_state, image_id), ReadServer(**kw))


def job(status: str, job_id: str = "job-1", **kw: Any) -> JobSeen:
    return JobSeen(JobView(job_id, status, **kw))


# Faults, each as the shell classifies the cloud client's errors.
def throttled(asked: Any, retry_after: float | None = None) -> Fault:
    return Fault(FaultKind.THROTTLED, asked, "ThrottledError", "slow down", 429, "APIGW.0308", "flow", retry_after)


def five_xx(asked: Any) -> Fault:
    return Fault(FaultKind.UNAVAILABLE, asked, "CloudAPIError", "try later", 503, "SYS.5003", "unavailable")


def busy(asked: Any) -> Fault:
    return Fault(FaultKind.UNAVAILABLE, asked, "CloudAPIError", "wait", 409, "Ecs.0603", "another operation")


def unreachable(asked: Any) -> Fault:
    return Fault(FaultKind.UNREACHABLE, asked, "CloudUnreachableError", "network")


def refused(asked: Any) -> Fault:
    return Fault(FaultKind.REFUSED, asked, "CloudAPIError", LOCKED_HINT, 400, "Ecs.0605", "server locked")


def silent(asked: Any) -> Fault:
    return Fault(FaultKind.OTHER, asked, "OutcomeUnknownError", "unknown")


def gone(code: str = "Common.0011", status: int = 400) -> Fault:
    return Fault(FaultKind.REFUSED, ReadJob("job-1"), "CloudAPIError", "expired", status, code, "job not found")


def bo(delay: float, failures: int = 1, cause: str = "CloudAPIError") -> tuple[Effect, ...]:
    return (
        Log(logging.WARNING, f"CR-ABCDEF: cloud trouble ({cause}); next try in {delay:.1f}s"),
        Schedule(delay, {"poll_failures": failures}),
    )


def fail(result: str, code: str | None = None, reason: str | None = None) -> Fail:
    return Fail(result, NOW, code, reason)


def succeed(how: str, status: str = "SHUTOFF") -> Succeed:
    return Succeed(how, f"web-1 now runs Ubuntu 24.04 ({how}); it is {status}.", NOW)


PW = {"login": LoginMethod.PASSWORD}
STOP = {"stop_first": True}
SENT = NOW - timedelta(seconds=30)
RUNNING_JOB = {"job_id": "job-1", "deadline_at": NOW + timedelta(minutes=20), "job_progress": "Job RUNNING"}
GONE_JOB = {**RUNNING_JOB, "job_status": JOB_GONE, "job_progress": "following"}
OVERDUE = {**RUNNING_JOB, "deadline_at": NOW - timedelta(seconds=1)}

Case = tuple[str, RequestState, dict[str, Any], Observation, tuple[Effect, ...]]

APPROVED: list[Case] = [
    ("password gone", S.APPROVED, PW, Due(password_known=False), (fail(
        "The admin password is gone (expired or lost). Nothing was sent; submit a new request."),)),
    ("password kept", S.APPROVED, PW, Due(password_known=True), (ReadServer(),)),
    ("key pair", S.APPROVED, {}, Due(password_known=False), (ReadServer(),)),
    ("server busy", S.APPROVED, STOP, seen("ACTIVE", "powering-off"), (
        Schedule(10.0, {"job_progress": "Waiting: the server is powering-off"}),)),
    ("stopped", S.APPROVED, {}, seen("SHUTOFF"), (Move(S.SUBMITTING, "the server is stopped", {"next_poll_at": 0.0}),)),
    ("error, no stop", S.APPROVED, {}, seen("ERROR"), (
        Move(S.SUBMITTING, "the server is stopped", {"next_poll_at": 0.0}),)),
    ("error, stop", S.APPROVED, STOP, seen("ERROR"), (fail(
        "web-1 is ERROR, neither running nor stopped. Nothing was sent; check the server in the console, then "
        "submit a new request."),)),
    ("running, stop", S.APPROVED, {**STOP, "stop_type": StopType.HARD}, seen("ACTIVE"), (
        Move(S.STOPPING, "stopping (HARD)", {"next_poll_at": 0.0}),)),
    ("running, no stop", S.APPROVED, {}, seen("ACTIVE"), (fail(
        "web-1 is running again, and the approved plan did not include stopping it. Nothing was sent; submit a new "
        "request (it will offer to stop the server)."),)),
    ("read throttled", S.APPROVED, {}, throttled(ReadServer()), bo(20.0, cause="ThrottledError")),
    ("read throttled, retry-after", S.APPROVED, {}, throttled(ReadServer(), 45.0), bo(45.0, cause="ThrottledError")),
    ("read 5xx", S.APPROVED, {"poll_failures": 2}, five_xx(ReadServer()), bo(80.0, 3)),
    ("read unreachable", S.APPROVED, {"poll_failures": 9}, unreachable(ReadServer()), bo(
        300.0, 10, "CloudUnreachableError")),
    ("read refused", S.APPROVED, {}, refused(ReadServer()), bo(20.0)),
]

STOPPING: list[Case] = [
    ("first step", S.STOPPING, STOP, Due(), (Update({"stop_sent_at": NOW}), PostStop("SOFT"))),
    ("job known", S.STOPPING, {**STOP, "stop_job_id": "stop-1"}, Due(), (ReadJob("stop-1"),)),
    ("sent, no job", S.STOPPING, {**STOP, "stop_sent_at": SENT}, Due(), (ReadServer(),)),
    ("posted", S.STOPPING, STOP, Posted("stop-1"), (
        Schedule(2.0, {"stop_job_id": "stop-1", "job_progress": "Stop job started"}),)),
    ("post outcome unknown", S.STOPPING, STOP, OutcomeUnknown(), (
        Schedule(2.0, {"job_progress": "Stop sent; checking the server"}),)),
    ("post throttled", S.STOPPING, STOP, throttled(PostStop("SOFT"), 30.0), (
        Update({"stop_sent_at": None}), *bo(30.0, cause="ThrottledError"))),
    ("post 5xx", S.STOPPING, STOP, five_xx(PostStop("SOFT")), (Update({"stop_sent_at": None}), *bo(20.0))),
    ("post busy", S.STOPPING, STOP, busy(PostStop("SOFT")), (Update({"stop_sent_at": None}), *bo(20.0))),
    ("post unreachable", S.STOPPING, STOP, unreachable(PostStop("SOFT")), (
        Update({"stop_sent_at": None}), *bo(20.0, cause="CloudUnreachableError"))),
    ("post refused", S.STOPPING, STOP, refused(PostStop("SOFT")), (fail(
        f"The cloud refused to stop the server: {LOCKED_HINT}", "Ecs.0605", "server locked"),)),
    ("post silent", S.STOPPING, STOP, silent(PostStop("SOFT")), bo(20.0, cause="OutcomeUnknownError")),
    ("job gone", S.STOPPING, {**STOP, "stop_job_id": "stop-1"}, gone(), (ReadServer(),)),
    ("job 404", S.STOPPING, {**STOP, "stop_job_id": "stop-1"}, gone("Ecs.0000", 404), (ReadServer(),)),
    ("job read 5xx", S.STOPPING, {**STOP, "stop_job_id": "stop-1"}, five_xx(ReadJob("stop-1")), bo(20.0)),
    ("job failed", S.STOPPING, STOP, job("FAIL", error_code="Ecs.0605", fail_reason="locked",
                                         failure_messages=("Ecs.0605: locked",), hint=LOCKED_HINT), (fail(
        f"The cloud could not stop the server: The cloud failed the job (Ecs.0605): locked. {LOCKED_HINT}",
        "Ecs.0605", "locked"),)),
    ("job running", S.STOPPING, {**STOP, "poll_failures": 3}, job("RUNNING"), (
        Schedule(5.0, {"job_progress": "Stop job RUNNING", "poll_failures": 0}),)),
    ("job done", S.STOPPING, STOP, job("SUCCESS"), (ReadServer(),)),
    ("stopped", S.STOPPING, STOP, seen("SHUTOFF"), (
        Move(S.SUBMITTING, "the server is stopped", {"next_poll_at": 0.0, "poll_failures": 0}),)),
    ("still stopping", S.STOPPING, STOP, seen("SHUTOFF", "powering-off"), (
        Schedule(5.0, {"job_progress": "Server SHUTOFF"}),)),
    ("job done, server lags", S.STOPPING, {**STOP, "stop_job_id": "s"}, seen("ACTIVE"), (
        Schedule(5.0, {"job_progress": "Server ACTIVE"}),)),
    ("stop lost", S.STOPPING, {**STOP, "stop_sent_at": SENT}, seen("ACTIVE"), (
        Schedule(0.0, {"stop_sent_at": None}),)),
    ("server read unreachable", S.STOPPING, STOP, unreachable(ReadServer()), bo(20.0, cause="CloudUnreachableError")),
]

CHANGE_FAULT = PostChange()
STARTED = {
    "job_id": "job-9",
    "submitted_at": NOW,
    "deadline_at": NOW + timedelta(seconds=1800),
    "poll_failures": 0,
    "job_progress": "Submitted; waiting for the cloud to start",
}

SUBMITTING: list[Case] = [
    ("maybe sent", S.SUBMITTING, {"submit_sent_at": SENT}, Due(), (Move(
        S.RECONCILING,
        "a change-OS request may already have reached the cloud; reading the server instead of posting again",
        {"next_poll_at": 0.0}),)),
    ("key pair, no user id", S.SUBMITTING, {"_user": None}, Due(), (fail(
        f"{MISSING_USER_ID} Nothing was sent; set it, then submit a new request."),)),
    ("key pair", S.SUBMITTING, {}, Due(), (BuildChange(),)),
    ("password, no user id", S.SUBMITTING, {**PW, "_user": None}, Due(), (BuildChange(),)),
    ("password gone", S.SUBMITTING, PW, PasswordGone(), (fail(
        "The admin password is gone (expired or lost). Nothing was sent; submit again."),)),
    ("invalid body", S.SUBMITTING, PW, ChangeInvalid("password too weak"), (fail(
        "The change could not be built: password too weak. Nothing was sent; submit a new request."),)),
    ("built", S.SUBMITTING, {}, ChangeReady(), (Update({"submit_sent_at": NOW}), PostChange())),
    ("outcome unknown", S.SUBMITTING, {"submit_sent_at": NOW}, OutcomeUnknown(), (
        Move(S.RECONCILING, "no answer to the change-OS request", {"next_poll_at": 0.0}),)),
    ("posted", S.SUBMITTING, {"submit_sent_at": NOW}, Posted("job-9"), (
        ForgetPassword(), Move(S.RUNNING, "job job-9", STARTED, poll_in=2.0))),
    ("throttled", S.SUBMITTING, {"submit_sent_at": NOW}, throttled(CHANGE_FAULT), (
        Update({"submit_sent_at": None}), *bo(20.0, cause="ThrottledError"))),
    ("throttled, retry-after", S.SUBMITTING, {"submit_sent_at": NOW}, throttled(CHANGE_FAULT, 99.0), (
        Update({"submit_sent_at": None}), *bo(99.0, cause="ThrottledError"))),
    ("5xx", S.SUBMITTING, {"submit_sent_at": NOW, "poll_failures": 1}, five_xx(CHANGE_FAULT), (
        Update({"submit_sent_at": None}), *bo(40.0, 2))),
    ("busy", S.SUBMITTING, {"submit_sent_at": NOW}, busy(CHANGE_FAULT), (
        Update({"submit_sent_at": None}), *bo(20.0))),
    ("unreachable", S.SUBMITTING, {"submit_sent_at": NOW}, unreachable(CHANGE_FAULT), (
        Update({"submit_sent_at": None}), *bo(20.0, cause="CloudUnreachableError"))),
    ("5xx, last try", S.SUBMITTING, {"submit_sent_at": NOW, "poll_failures": MAX_SUBMIT_ATTEMPTS - 1},
     five_xx(CHANGE_FAULT), (fail("The cloud kept refusing the change (5 tries): try later", "SYS.5003"),)),
    ("unreachable, last try", S.SUBMITTING, {"submit_sent_at": NOW, "poll_failures": 4}, unreachable(CHANGE_FAULT), (
        fail("The cloud kept refusing the change (5 tries): network"),)),
    ("refused", S.SUBMITTING, {"submit_sent_at": NOW}, refused(CHANGE_FAULT), (fail(
        f"The cloud refused the change: {LOCKED_HINT}", "Ecs.0605", "server locked"),)),
    ("silent", S.SUBMITTING, {"submit_sent_at": NOW}, silent(CHANGE_FAULT), bo(20.0, cause="OutcomeUnknownError")),
]

REBUILT = {
    "submitted_at": SENT,
    "deadline_at": SENT + timedelta(seconds=1800),
    "job_progress": "The cloud is changing the OS (following the server: the job id never came back)",
}
REBUILD_DETAIL = "the server is rebuilding: the change was accepted (job id unknown; following the server)"
RECONCILING: list[Case] = [
    ("first look", S.RECONCILING, {"submit_sent_at": SENT}, Due(), (ReadServer(),)),
    ("rebuilding", S.RECONCILING, {"submit_sent_at": SENT}, seen("SHUTOFF", "rebuild_spawning"), (
        Move(S.RUNNING, REBUILD_DETAIL, REBUILT, poll_in=10.0),)),
    ("REBUILD", S.RECONCILING, {"submit_sent_at": SENT}, seen("REBUILD"), (
        Move(S.RUNNING, REBUILD_DETAIL, REBUILT, poll_in=10.0),)),
    ("no sent time", S.RECONCILING, {}, seen("REBUILD"), (Move(S.RUNNING, REBUILD_DETAIL, {
        **REBUILT, "submitted_at": NOW, "deadline_at": NOW + timedelta(seconds=1800)}, poll_in=10.0),)),
    ("already done", S.RECONCILING, {"submit_sent_at": SENT}, seen("SHUTOFF", None, TARGET), (
        succeed("confirmed by reading the server"),)),
    ("new image, still busy", S.RECONCILING, {"submit_sent_at": SENT}, seen("SHUTOFF", "powering-on", TARGET), (
        Schedule(5.0, {"job_progress": "Checking whether the cloud took it"}),)),
    ("within grace", S.RECONCILING, {"submit_sent_at": SENT}, seen("SHUTOFF"), (
        Schedule(5.0, {"job_progress": "Checking whether the cloud took it"}),)),
    ("grace over", S.RECONCILING, {"submit_sent_at": NOW - timedelta(seconds=61)}, seen("SHUTOFF"), (fail(
        "The change-OS request got no answer, and 61s later web-1 shows no change: it was not carried out, and "
        "nothing else was sent. Submit a new request."),)),
    ("read 5xx", S.RECONCILING, {"submit_sent_at": SENT}, five_xx(ReadServer()), bo(20.0)),
]

SUB_FAIL = JobView(
    "job-1",
    "FAIL",
    error_code="Ecs.0605",
    fail_reason="Ecs.0605: server locked.",
    failure_messages=("Ecs.0605: Ecs.0605: server locked.", "Ecs.0605: server locked", "disk busy"),
    sub_job_statuses=("FAIL", "SUCCESS"),
    hint=LOCKED_HINT,
)
GONE_NOTE = (
    "The cloud no longer knows job job-1 (Common.0011: job records expire). Following web-1 itself until it shows "
    "the outcome."
)
RUNNING: list[Case] = [
    ("job id", S.RUNNING, RUNNING_JOB, Due(), (ReadJob("job-1"),)),
    ("no job id", S.RUNNING, {}, Due(), (ReadServer(),)),
    ("job gone earlier", S.RUNNING, GONE_JOB, Due(), (ReadServer(),)),
    ("SUCCESS", S.RUNNING, RUNNING_JOB, job("SUCCESS"), (ReadServer(after_job="job-1"),)),
    ("SUCCESS, image", S.RUNNING, RUNNING_JOB, seen("ACTIVE", None, TARGET, after_job="job-1"), (
        succeed("job job-1", "ACTIVE"),)),
    ("SUCCESS, old image", S.RUNNING, RUNNING_JOB, seen("ACTIVE", None, OLD, after_job="job-1"), (fail(
        "The job reported success, but web-1 still shows image img-old. Check the server in the console before "
        "using it."),)),
    ("FAIL, code, reason, sub-jobs", S.RUNNING, RUNNING_JOB, JobSeen(SUB_FAIL), (fail(
        f"The cloud failed the job (Ecs.0605): Ecs.0605: server locked; disk busy. {LOCKED_HINT}",
        "Ecs.0605", "Ecs.0605: server locked."),)),
    ("FAIL, nothing said", S.RUNNING, RUNNING_JOB, job("FAIL"), (fail(
        "The cloud failed the job: it gave no reason."),)),
    ("RUNNING, sub-jobs", S.RUNNING, RUNNING_JOB, job("RUNNING", sub_job_statuses=("SUCCESS", "RUNNING")), (
        Schedule(10.0, {"poll_failures": 0, "job_status": "RUNNING",
                        "job_progress": "Job RUNNING · sub-jobs 1/2 done"}), Tell())),
    ("RUNNING, unchanged", S.RUNNING, {**RUNNING_JOB, "poll_failures": 2}, job("RUNNING"), (
        Schedule(10.0, {"poll_failures": 0, "job_status": "RUNNING", "job_progress": "Job RUNNING"}),)),
    ("INIT", S.RUNNING, RUNNING_JOB, job("INIT"), (
        Schedule(10.0, {"poll_failures": 0, "job_status": "INIT", "job_progress": "The cloud is preparing the job"}),
        Tell())),
    ("PENDING_PAYMENT", S.RUNNING, RUNNING_JOB, job("PENDING_PAYMENT"), (
        Schedule(10.0, {"poll_failures": 0, "job_status": "PENDING_PAYMENT", "job_progress": PAYMENT_PROGRESS}),
        Tell())),
    ("unknown status, missing entities", S.RUNNING, RUNNING_JOB, job("QUEUED"), (
        Schedule(10.0, {"poll_failures": 0, "job_status": "QUEUED", "job_progress": "Job QUEUED"}), Tell())),
    ("overdue", S.RUNNING, OVERDUE, job("RUNNING"), (
        Audit("overdue", "past the job deadline"),
        Schedule(60.0, {"poll_failures": 0, "job_status": "RUNNING", "job_progress": "Job RUNNING", "overdue": True}),
        Tell())),
    ("overdue, told", S.RUNNING, {**OVERDUE, "overdue": True}, job("RUNNING"), (
        Schedule(60.0, {"poll_failures": 0, "job_status": "RUNNING", "job_progress": "Job RUNNING"}),)),
    ("job gone", S.RUNNING, RUNNING_JOB, gone(), (
        Log(logging.INFO, "CR-ABCDEF: job job-1 is gone (Common.0011); following the server"),
        Audit("job_gone", GONE_NOTE),
        Update({"job_status": JOB_GONE, "job_progress": GONE_NOTE, "poll_failures": 0}),
        Note(f"🔎 {GONE_NOTE}"),
        ReadServer())),
    ("job read throttled", S.RUNNING, RUNNING_JOB, throttled(ReadJob("job-1"), 7.0), bo(20.0, cause="ThrottledError")),
    ("job read refused", S.RUNNING, RUNNING_JOB, refused(ReadJob("job-1")), bo(20.0)),
    ("gone, rebuilding", S.RUNNING, GONE_JOB, seen("SHUTOFF", "rebuilding"), (
        Schedule(10.0, {"poll_failures": 0, "job_status": JOB_GONE, "job_progress": "following"}),)),
    ("no id, rebuilding", S.RUNNING, {}, seen("REBUILD"), (
        Schedule(10.0, {"poll_failures": 0, "job_status": "RUNNING", "job_progress": "Changing the OS"}), Tell())),
    ("gone, overdue rebuilding", S.RUNNING, {**GONE_JOB, "deadline_at": NOW - timedelta(hours=1)}, seen("REBUILD"), (
        Audit("overdue", "past the job deadline"),
        Schedule(60.0, {"poll_failures": 0, "job_status": JOB_GONE, "job_progress": "following", "overdue": True}),
        Tell())),
    ("gone, image", S.RUNNING, GONE_JOB, seen("SHUTOFF", None, TARGET), (succeed("confirmed by reading the server"),)),
    ("gone, no change", S.RUNNING, GONE_JOB, seen("SHUTOFF"), (fail(
        "Job job-1 is gone from the cloud and web-1 is SHUTOFF with image img-old, not Ubuntu 24.04: the change "
        "did not happen. See the ECS console's task list for the reason, then submit a new request."),)),
    ("no id, no change", S.RUNNING, {}, seen("ACTIVE"), (fail(
        "The change ended without the new image: web-1 shows image img-old. The cloud's job id never reached the "
        "bot; see the ECS console's task list for the reason."),)),
    ("server read 5xx", S.RUNNING, GONE_JOB, five_xx(ReadServer()), bo(20.0)),
]


# --------------------------------------------------------------------------------------------- backing up
BK = {"backup_wanted": True}
NAME = "ecsbot-web-1-CR-ABCDEF-20261202T120000Z"
BK_SENT = {**BK, "backup_sent_at": SENT, "backup_image_name": NAME}
BK_JOB = {**BK_SENT, "backup_job_id": "ims-1"}
BY_BOT = {"stop_first": True, "stop_job_id": "stop-1"}
QUOTA_HINT = hint_for("IMG.0015")
NOT_SENT = "Nothing was changed: the OS change was not sent."
FAILURE = "IMS refused the backup: stop it. " + NOT_SENT


def ims_job(status: str, image_id: str | None = None, percent: float | None = None, **kw: Any) -> BackupJobSeen:
    return BackupJobSeen(BackupJobView("ims-1", status, image_id, percent, **kw))


def ims_refused(code: str, hint: str = "stop it", status: int = 400) -> Fault:
    post = PostBackup(NAME, bk.image_description("CR-ABCDEF", "web-1"), bk.image_tags("CR-ABCDEF", "srv-1", NOW))
    return Fault(FaultKind.REFUSED, post, "CloudAPIError", hint, status, code, "refused")


def found(*statuses: str, name: str = NAME) -> BackupsFound:
    return BackupsFound(tuple(BackupView(f"img-{n}", name, st) for n, st in enumerate(statuses)))


def ready(took: str = "30s", image_id: str = "img-b") -> Move:
    fields = {
        "backup_image_id": image_id,
        "backup_done_at": NOW,
        "poll_failures": 0,
        "next_poll_at": 0.0,
        "job_progress": f"Backup {NAME} ready ({took})",
    }
    return Move(S.SUBMITTING, f"backup {NAME} ({image_id}) is ready after {took}", fields)


def restart(failure: str, code: str | None, reason: str | None) -> tuple[Effect, ...]:
    fields = {"backup_failure": failure, "error_code": code, "fail_reason": reason}
    return (Audit("backup_failed", failure), Update(fields), PostStart())


POST = ims_refused("x").asked
JOB_FAIL = "IMS failed the backup (Common.0001): disk read error. " + hint_for("Common.0001") + " " + NOT_SENT
BACKING_UP: list[Case] = [
    ("first step: name and tags written before the POST", S.BACKING_UP, BK, Due(), (
        Update({"backup_sent_at": NOW, "backup_image_name": NAME}), POST)),
    ("job known", S.BACKING_UP, BK_JOB, Due(), (ReadBackupJob("ims-1"),)),
    ("sent, no job: find the image, never create a second", S.BACKING_UP, BK_SENT, Due(), (FindBackup(NAME),)),
    ("posted", S.BACKING_UP, BK_SENT, Posted("ims-1"), (
        Schedule(2.0, {"backup_job_id": "ims-1", "poll_failures": 0, "job_progress": "Backup started"}), Tell())),
    ("post outcome unknown", S.BACKING_UP, BK_SENT, OutcomeUnknown(), (
        Schedule(2.0, {"job_progress": "Backup requested; looking for its image"}),)),
    ("name taken: our own earlier create", S.BACKING_UP, BK_SENT, ims_refused("IMG.0009"), (FindBackup(NAME),)),
    ("post throttled", S.BACKING_UP, BK_SENT, throttled(POST), (
        Update({"backup_sent_at": None}), *bo(20.0, cause="ThrottledError"))),
    ("post: server has a task", S.BACKING_UP, BK_SENT, ims_refused("IMG.0010"), (
        Update({"backup_sent_at": None}), *bo(20.0))),
    ("post: tries used up", S.BACKING_UP, {**BK_SENT, **BY_BOT, "poll_failures": 4}, unreachable(POST), restart(
        f"IMS kept refusing the backup (5 tries): network. {NOT_SENT}", None, None)),
    ("post refused, the bot did not stop it", S.BACKING_UP, BK_SENT, ims_refused("IMG.0015", QUOTA_HINT), (fail(
        f"IMS refused the backup: {QUOTA_HINT.rstrip('.')}. {NOT_SENT}", "IMG.0015", "refused"),)),
    ("post refused after the bot stopped it", S.BACKING_UP, {**BK_SENT, **BY_BOT}, ims_refused("IMG.0008"),
     restart(FAILURE, "IMG.0008", "refused")),
    ("post refused, restart off", S.BACKING_UP, {**BK_SENT, **BY_BOT, "backup_restart": False},
     ims_refused("IMG.0008"), (fail(FAILURE, "IMG.0008", "refused"),)),
    ("post silent", S.BACKING_UP, BK_SENT, silent(POST), bo(20.0, cause="OutcomeUnknownError")),
    ("job INIT", S.BACKING_UP, BK_JOB, ims_job("INIT"), (
        Schedule(10.0, {"job_progress": "Backing up the system disk · 30s", "poll_failures": 0}),)),
    ("job RUNNING with a percentage", S.BACKING_UP, {**BK_JOB, "backup_sent_at": NOW - timedelta(seconds=95)},
     ims_job("RUNNING", percent=41.6), (
        Schedule(10.0, {"job_progress": "Backing up the system disk · 42% · 1m 35s", "poll_failures": 0}), Tell())),
    ("job past the deadline", S.BACKING_UP, {**BK_JOB, "backup_sent_at": NOW - timedelta(hours=1)},
     ims_job("RUNNING"), (fail(
        f"The backup did not finish within 30 minutes. Check the image {NAME} in the IMS console. {NOT_SENT}"),)),
    ("job SUCCESS", S.BACKING_UP, BK_JOB, ims_job("SUCCESS", "img-b"), (ready(),)),
    ("job SUCCESS without image id", S.BACKING_UP, BK_JOB, ims_job("SUCCESS"), (FindBackup(NAME),)),
    ("job FAIL, the bot stopped it: start it again", S.BACKING_UP, {**BK_JOB, **BY_BOT},
     ims_job("FAIL", error_code="Common.0001", fail_reason="disk read error.", hint=hint_for("Common.0001")),
     restart(JOB_FAIL, "Common.0001", "disk read error.")),
    ("job FAIL, it was stopped already", S.BACKING_UP, BK_JOB,
     ims_job("FAIL", error_code="Common.0001", fail_reason="disk read error.", hint=hint_for("Common.0001")),
     (fail(JOB_FAIL, "Common.0001", "disk read error."),)),
    ("job empty status is a failure", S.BACKING_UP, BK_JOB, ims_job(""), (fail(
        f"IMS failed the backup: it gave no reason. {NOT_SENT}"),)),
    ("job record gone", S.BACKING_UP, BK_JOB, Fault(
        FaultKind.REFUSED, ReadBackupJob("ims-1"), "CloudAPIError", "gone", 400, "IMG.0023", "no job"), (
        FindBackup(NAME),)),
    ("job read 5xx", S.BACKING_UP, BK_JOB, five_xx(ReadBackupJob("ims-1")), bo(20.0)),
    ("found active", S.BACKING_UP, BK_SENT, found("active"), (ready(image_id="img-0"),)),
    ("found saving", S.BACKING_UP, BK_SENT, found("saving"), (
        Schedule(10.0, {"job_progress": "Backing up the system disk · 30s", "poll_failures": 0}),)),
    ("found killed", S.BACKING_UP, BK_SENT, found("killed"), (fail(
        f"The backup image {NAME} ended killed: IMS could not make it. {NOT_SENT}"),)),
    ("found only another name", S.BACKING_UP, BK_SENT, found("active", name="someone-elses"), (
        Schedule(5.0, {"job_progress": "Looking for the backup image"}),)),
    ("none found after the grace: create again, same name", S.BACKING_UP,
     {**BK_SENT, "backup_sent_at": NOW - timedelta(minutes=5)}, found(), (
        Log(logging.INFO, f"CR-ABCDEF: no backup image {NAME}; creating it again"),
        Schedule(0.0, {"backup_sent_at": None, "backup_job_id": None}))),
    ("restart decided: start (again)", S.BACKING_UP, {**BK_JOB, **BY_BOT, "backup_failure": FAILURE}, Due(), (
        PostStart(),)),
    ("restart posted", S.BACKING_UP, {**BK_JOB, **BY_BOT, "backup_failure": FAILURE}, Posted("start-1"), (fail(
        f"{FAILURE} The bot started web-1 again (job start-1)."),)),
    ("restart unknown", S.BACKING_UP, {**BK_JOB, **BY_BOT, "backup_failure": FAILURE}, OutcomeUnknown(), (fail(
        f"{FAILURE} The bot asked to start web-1 again; check that it runs."),)),
    ("restart refused", S.BACKING_UP, {**BK_JOB, **BY_BOT, "backup_failure": FAILURE}, busy(PostStart()), (fail(
        f"{FAILURE} The bot could not start web-1 again (Ecs.0603): start it in the console."),)),
    ("stopped, backup wanted (approved)", S.APPROVED, BK, seen("SHUTOFF"), (Move(
        S.BACKING_UP, "the server is stopped; backing up its system disk first", {"next_poll_at": 0.0}),)),
    ("stopped, backup wanted (stopping)", S.STOPPING, {**BK, **BY_BOT}, seen("SHUTOFF"), (Move(
        S.BACKING_UP, "the server is stopped; backing up its system disk first",
        {"next_poll_at": 0.0, "poll_failures": 0}),)),
    ("stopped, backup already taken", S.STOPPING, {**BK, **BY_BOT, "backup_image_id": "img-b"}, seen("SHUTOFF"), (
        Move(S.SUBMITTING, "the server is stopped", {"next_poll_at": 0.0, "poll_failures": 0}),)),
]

ALL = APPROVED + STOPPING + SUBMITTING + RECONCILING + RUNNING + BACKING_UP


def decide(state: RequestState, fields: dict[str, Any], observation: Observation, jitter: float = 1.0) -> Decision:
    fields = dict(fields)
    user_id = fields.pop("_user", USER)
    return step(req(state, **fields), CFG, observation, NOW, user_id=user_id, jitter=jitter)


@pytest.mark.parametrize(("state", "fields", "observation", "expected"), [c[1:] for c in ALL], ids=[
    f"{c[1].value}: {c[0]}" for c in ALL
])
def test_step(state: RequestState, fields: dict[str, Any], observation: Observation, expected: tuple[Effect, ...]):
    assert decide(state, fields, observation).effects == expected


def test_the_tables_cover_every_phase_job_shape_and_fault():
    assert {c[1] for c in ALL} == set(DRIVEN)
    shapes = {o.job.status for c in ALL if isinstance(o := c[3], JobSeen)}
    assert {"SUCCESS", "FAIL", "RUNNING", "INIT", "PENDING_PAYMENT"} <= shapes
    faults = {(c[1], o.kind) for c in ALL if isinstance(o := c[3], Fault)}
    assert {kind for _, kind in faults} == set(FaultKind)
    assert {state for state, _ in faults} == set(DRIVEN)
    for post in (PostStop("SOFT"), PostChange()):
        post_faults = {o.kind for c in ALL if isinstance(o := c[3], Fault) and o.asked == post}
        assert post_faults == set(FaultKind), post
    observed = {(c[1], type(c[3])) for c in ALL}
    assert {(S.STOPPING, OutcomeUnknown), (S.SUBMITTING, OutcomeUnknown)} <= observed
    gone_in = {c[1] for c in ALL if isinstance(o := c[3], Fault) and o.job_gone}
    assert gone_in == {S.STOPPING, S.RUNNING}
    assert any(c[2] is OVERDUE for c in ALL)


@pytest.mark.parametrize("case", ALL, ids=[f"{c[1].value}: {c[0]}" for c in ALL])
def test_a_cloud_call_only_ends_a_decision_and_a_change_is_only_posted_after_submit_sent_at(case: Case):
    effects = case[4]
    calls = [e for e in effects if isinstance(e, CLOUD_CALLS)]
    assert len(calls) <= 1
    assert not calls or effects[-1] is calls[0]
    for i, effect in enumerate(effects):
        if isinstance(effect, PostChange):
            assert i > 0 and effects[i - 1] == Update({"submit_sent_at": NOW})
        if isinstance(effect, PostStop):
            assert i > 0 and effects[i - 1] == Update({"stop_sent_at": NOW})
        if isinstance(effect, PostBackup):
            assert i > 0 and effects[i - 1] == Update({"backup_sent_at": NOW, "backup_image_name": effect.name})


def test_ended_and_undriven_requests_get_no_effects():
    for state in set(RequestState) - set(DRIVEN):
        assert step(req(state), CFG, Due(), NOW).effects == ()


@pytest.mark.parametrize(("state", "observation"), [
    (S.APPROVED, Posted("x")),
    (S.STOPPING, ChangeReady()),
    (S.SUBMITTING, JobSeen(JobView("j", "RUNNING"))),
    (S.RECONCILING, OutcomeUnknown()),
    (S.RUNNING, PasswordGone()),
])
def test_an_answer_to_a_question_never_asked_is_a_bug(state: RequestState, observation: Observation):
    with pytest.raises(UnexpectedObservation):
        decide(state, {}, observation)


@pytest.mark.parametrize(("failures", "jitter", "retry_after", "delay"), [
    (0, 1.0, None, 20.0),
    (0, 0.0, None, 10.0),
    (0, 0.5, None, 15.0),
    (3, 1.0, None, 160.0),
    (4, 1.0, None, 300.0),  # capped at max_backoff
    (50, 0.0, None, 150.0),
    (0, 0.0, 120.0, 120.0),  # Retry-After is a floor
    (4, 1.0, 10.0, 300.0),
])
def test_backoff_grows_is_capped_jittered_and_honours_retry_after(failures, jitter, retry_after, delay):
    request = req(S.RUNNING, poll_failures=failures)
    fault = throttled(ReadServer(), retry_after)
    effects = backoff(request, CFG, fault, jitter=jitter)
    assert effects[-1] == Schedule(delay, {"poll_failures": failures + 1})


def test_a_bug_backs_off_like_a_fault_and_says_so():
    log_line, schedule = backoff(req(S.RUNNING), CFG, None, jitter=1.0)
    assert log_line == Log(logging.WARNING, "CR-ABCDEF: cloud trouble (bug); next try in 20.0s")
    assert schedule == Schedule(20.0, {"poll_failures": 1})


def test_retry_after_is_only_a_floor_for_throttling():
    fault = replace(five_xx(ReadServer()), retry_after=250.0)
    assert backoff(req(S.RUNNING), CFG, fault, jitter=1.0)[-1] == Schedule(20.0, {"poll_failures": 1})


def test_the_step_reads_no_clock():
    later = NOW + timedelta(days=400)
    a = step(req(S.SUBMITTING), CFG, ChangeReady(), later, user_id=USER)
    assert a.effects == (Update({"submit_sent_at": later}), PostChange())
    assert step(req(S.SUBMITTING), CFG, ChangeReady(), later, user_id=USER) == a


# ------------------------------------------------------------------ job shapes and faults as the shell reads them


@pytest.mark.parametrize(("payload", "progress"), [
    ({"job_id": "j", "status": "RUNNING"}, "Job RUNNING"),
    ({"job_id": "j", "status": "RUNNING", "entities": {}}, "Job RUNNING"),
    ({"job_id": "j", "status": "RUNNING", "entities": []}, "Job RUNNING"),
    ({"job_id": "j", "status": "RUNNING", "entities": {"sub_jobs": []}}, "Job RUNNING"),
    ({"job_id": "j", "status": "RUNNING", "entities": {"sub_jobs": [{"status": "SUCCESS"}, {"status": "INIT"}]}},
     "Job RUNNING · sub-jobs 1/2 done"),
    ({"job_id": "j", "status": "INIT"}, "The cloud is preparing the job"),
    ({"job_id": "j", "status": "PENDING_PAYMENT"}, PAYMENT_PROGRESS),
])
def test_job_shapes_read_into_progress(payload: dict[str, Any], progress: str):
    assert progress_text(job_view(Job.model_validate(payload))) == progress


def test_a_failed_job_with_sub_jobs_reads_into_one_sentence():
    payload = {
        "job_id": "j",
        "status": "FAIL",
        "error_code": "Ecs.0605",
        "fail_reason": "server locked",
        "entities": {"sub_jobs": [
            {"status": "FAIL", "error_code": "Ecs.0605", "fail_reason": "server locked"},
            {"status": "FAIL", "entities": {"errorcode_message": "the disk is busy."}},
        ]},
    }
    view = job_view(Job.model_validate(payload))
    assert view.failed and view.sub_job_statuses == ("FAIL", "FAIL") and view.hint == LOCKED_HINT
    assert failure_text(view) == f"The cloud failed the job (Ecs.0605): server locked; the disk is busy. {LOCKED_HINT}"


def test_a_failed_job_without_a_code_gives_no_hint():
    view = job_view(Job.model_validate({"job_id": "j", "status": "FAIL", "fail_reason": "boom"}))
    assert failure_text(view) == "The cloud failed the job: boom."


@pytest.mark.parametrize(("error", "kind", "not_now", "job_gone"), [
    (ThrottledError(429, "APIGW.0308", "flow", retry_after=3.0), FaultKind.THROTTLED, True, False),
    (CloudAPIError(503, "SYS.5003", "down"), FaultKind.UNAVAILABLE, True, False),
    (CloudAPIError(500, "Ecs.1002", "timeout"), FaultKind.UNAVAILABLE, True, False),
    (CloudAPIError(409, "Ecs.0603", "busy"), FaultKind.UNAVAILABLE, True, False),
    (CloudAPIError(400, "Ecs.0605", "locked"), FaultKind.REFUSED, False, False),
    (CloudAPIError(400, "Common.0011", "no such job"), FaultKind.REFUSED, False, True),
    (CloudAPIError(404, "", "not found"), FaultKind.REFUSED, False, True),
    (CloudUnreachableError("get_job", "refused"), FaultKind.UNREACHABLE, True, False),
    (OutcomeUnknownError("get_server", "srv-1"), FaultKind.OTHER, False, False),
])
def test_cloud_errors_become_faults(error, kind, not_now, job_gone):
    fault = fault_of(error, ReadJob("j"))
    assert (fault.kind, fault.not_now, fault.job_gone) == (kind, not_now, job_gone)
    assert fault.name == type(error).__name__ and fault.hint == error.hint
    assert fault.retry_after == (3.0 if kind is FaultKind.THROTTLED else None)


def test_a_key_pair_request_without_user_id_reads_the_missing_setting():
    decision = decide(S.SUBMITTING, {"_user": ""}, Due())
    assert isinstance(decision.effects[0], Fail) and "HUAWEICLOUD_USER_ID" in decision.effects[0].result
    assert decision.call is None
    assert decide(S.SUBMITTING, {"login": LoginMethod.PASSWORD}, Due()).call == BuildChange()


# ------------------------------------------------------------------ the layers


def _imports(path: str) -> set[str]:
    tree = ast.parse(Path(path).read_text())
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_the_core_imports_only_the_domain_and_the_shell_never_slack():
    root = Path(__file__).resolve().parents[2]
    core = {m for m in _imports(str(root / "bot/domain/tracking.py")) if m.startswith("bot")}
    assert core <= {"bot.domain.request", "bot.domain.backup"}
    shell = _imports(str(root / "bot/services/tracker.py"))
    assert not {m for m in shell if m.startswith("bot.slack")}
    assert not {m for m in _imports(str(root / "bot/slack/listeners/changeos.py")) if m == "bot.services.tracker"}


def test_slacks_presenter_has_the_protocols_methods():
    from bot.slack.presenter import Presenter as SlackPresenter

    for name in ("sync", "note", "progress"):
        ours = list(inspect.signature(getattr(Presenter, name)).parameters)
        theirs = list(inspect.signature(getattr(SlackPresenter, name)).parameters)
        assert theirs == ours, name
        assert inspect.iscoroutinefunction(getattr(SlackPresenter, name))
