"""Async Huawei Cloud client for ECS, IMS, EVS and jobs, signed like the official SDK.

Reads retry on throttling, 5xx, timeouts and dropped connections (exponential backoff, full jitter). Writes never
retry once a byte may have left: a missing answer becomes OutcomeUnknownError so the caller reconciles by reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from bot import metrics
from bot.cloud import signer
from bot.cloud.credentials import Credentials, CredentialSource, MetadataCredentials
from bot.cloud.errors import (
    CloudAPIError,
    CloudUnreachableError,
    OutcomeUnknownError,
    ThrottledError,
    error_from_response,
    parse_error_fields,
    request_id_from,
)
from bot.cloud.models import (
    ChangeOsOption,
    Image,
    ImageJob,
    ImageQuota,
    Job,
    KeyPair,
    Server,
    StopType,
    Volume,
    create_image_body,
    start_body,
    stop_body,
)
from bot.cloud.tags import PAGE_MAX, TaggedServer, tag_query_body
from bot.cloud.transport import fast_idle_check_transport

log = logging.getLogger(__name__)

USER_AGENT = "ecs-changeos-bot/0.1"
JSON_GET = "application/json"
JSON_POST = "application/json;charset=utf-8"

Service = Literal["ecs", "ims", "evs"]
M = TypeVar("M", bound=BaseModel)


def _normalise_endpoint(url: str) -> str:
    """The SDK assumes https:// when no scheme is given; a trailing slash is dropped."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"Endpoint {url!r} is not an http(s) URL such as https://ecs.my-kualalumpur-1.myhuaweicloud.com"
        )
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Endpoints:
    ecs: str
    ims: str
    evs: str

    def __post_init__(self) -> None:
        for name in ("ecs", "ims", "evs"):
            object.__setattr__(self, name, _normalise_endpoint(getattr(self, name)))

    @classmethod
    def for_region(
        cls, region: str, *, ecs: str | None = None, ims: str | None = None, evs: str | None = None
    ) -> Endpoints:
        """Public endpoints of `region` (e.g. my-kualalumpur-1), each overridable (tests point them at a simulator)."""
        region = region.strip()
        if not region and not (ecs and ims and evs):
            raise ValueError("HUAWEICLOUD_REGION is empty: set it (e.g. my-kualalumpur-1) or set every endpoint.")
        return cls(
            ecs=ecs or f"https://ecs.{region}.myhuaweicloud.com",
            ims=ims or f"https://ims.{region}.myhuaweicloud.com",
            evs=evs or f"https://evs.{region}.myhuaweicloud.com",
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for retrying reads (and writes that provably never left): attempts, backoff and a total deadline."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    total_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1.")
        if self.base_delay < 0 or self.max_delay < 0 or self.total_timeout <= 0:
            raise ValueError("RetryPolicy delays must be >= 0 and total_timeout > 0.")

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**attempt)] (attempt counts from 0)."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


@dataclass(slots=True)
class _Call:
    """One logical API call; `attempt` builds and sends a freshly signed request each time."""

    service: Service
    method: Literal["GET", "POST", "DELETE"]
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    operation: str = ""
    server_id: str = ""
    secrets: tuple[str, ...] = ()


def _q(value: str) -> str:
    """Path parameters are quoted with nothing safe, as the SDK does, so an ID can never change the path."""
    return quote(str(value), safe="")


class CloudClient:
    """One pooled httpx.AsyncClient for all endpoints (connection reuse); use `async with` or call `aclose()`."""

    def __init__(
        self,
        credentials: Credentials | CredentialSource,
        endpoints: Endpoints,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds.")
        self._source: CredentialSource = credentials
        self._project_id = credentials.project_id
        self._endpoints = endpoints
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self.last_accepted: float | None = None  # time.monotonic() of the last answer that was not 401/403
        # httpcore's pool walks its connections on every request, and counts them once per idle connection (its cost
        # grows with the square of the pool): at 64 connections a request cost ~3 ms of CPU on the event loop, at 32
        # about half that. 32 is the tracker's concurrency, every idle one kept (no reconnect churn under load).
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=30.0)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=limits,
            transport=transport or fast_idle_check_transport(limits),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"CloudClient(credentials={self._source.describe()!r}, endpoints={self._endpoints!r})"

    @property
    def credentials(self) -> CredentialSource:
        return self._source

    @property
    def endpoints(self) -> Endpoints:
        return self._endpoints

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if isinstance(self._source, MetadataCredentials):
            await self._source.aclose()

    # ------------------------------------------------------------------------------------------------ reads

    @property
    def _pid(self) -> str:
        return _q(self._project_id)

    async def get_server(self, server_id: str) -> Server:
        """CloudAPIError(status=404, code="Ecs.0114") when the server does not exist."""
        call = _Call("ecs", "GET", f"/v1/{self._pid}/cloudservers/{_q(server_id)}", operation="get_server")
        try:
            data = await self._read(call)
        except CloudAPIError as err:
            if err.status == 404 and err.code in ("404", "itemNotFound"):
                raise CloudAPIError(404, "Ecs.0114", err.message, err.request_id) from None
            raise
        return _parse(Server, _field(data, "server", call), call)

    async def list_servers(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Server]:
        """One page of `GET /cloudservers/detail`; `name` is the server's own (fuzzy) filter, `offset` a page number."""
        query = _pairs(name=name, status=status, limit=limit, offset=offset)
        call = _Call("ecs", "GET", f"/v1/{self._pid}/cloudservers/detail", query, operation="list_servers")
        data = await self._read(call)
        return [_parse(Server, item, call) for item in _list(data, "servers", call)]

    async def find_servers(self, name: str) -> list[Server]:
        """Exact name matches only: the cloud's `name` filter also matches partial names."""
        servers = await self.list_servers(name=name, limit=1000)
        return [server for server in servers if server.name == name]

    async def servers_by_tag(
        self, tags: dict[str, str | None], *, page_size: int = PAGE_MAX, max_servers: int = 10_000
    ) -> list[TaggedServer]:
        """Every server carrying all `tags` (None: any value), paging with limit/offset until `total_count`."""
        found: list[TaggedServer] = []
        while len(found) < max_servers:
            body = tag_query_body(tags, limit=page_size, offset=len(found))
            path = f"/v1/{self._pid}/cloudservers/resource_instances/action"
            call = _Call("ecs", "POST", path, body=body, operation="servers_by_tag")  # a read: retried safely
            data = await self._read(call)
            page = [_parse(TaggedServer, item, call) for item in _list(data, "resources", call)]
            found += page
            total = data.get("total_count") if isinstance(data, dict) else None
            if not page or (isinstance(total, int) and len(found) >= total):
                break
        return found[:max_servers]

    async def list_keypairs(self) -> list[KeyPair]:
        call = _Call("ecs", "GET", f"/v2.1/{self._pid}/os-keypairs", operation="list_keypairs")
        data = await self._read(call)
        items = _list(data, "keypairs", call)
        # Nova wraps each item: {"keypair": {...}}; accept a bare item too.
        return [_parse(KeyPair, item.get("keypair", item) if isinstance(item, dict) else item, call) for item in items]

    async def list_images(
        self,
        query: ImageQuery | None = None,
        *,
        id: str | None = None,
        name: str | None = None,
        os_type: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> list[Image]:
        """One page of IMS `GET /v2/cloudimages` (no project in the path: it travels in the signed X-Project-Id)."""
        pairs = query.pairs() if query is not None else []  # no query: no filters (get_image must see any status)
        pairs += _pairs(id=id, name=name, __os_type=os_type, status=status, limit=limit, marker=marker)
        call = _Call("ims", "GET", "/v2/cloudimages", sorted(pairs), operation="list_images")
        data = await self._read(call)
        return [_parse(Image, item, call) for item in _list(data, "images", call)]

    async def catalogue(self, query: ImageQuery, *, page_size: int = 500, max_images: int = 20_000) -> Catalogue:
        """Every image the query names, page after page (`marker` = the last id) until a short page or the bound."""
        images: list[Image] = []
        marker: str | None = None
        while True:
            page = await self.list_images(query, limit=page_size, marker=marker)
            fresh = [image for image in page if image.id != marker]
            images.extend(fresh)
            if len(page) < page_size or not fresh:
                return Catalogue(images, complete=True)
            if len(images) >= max_images:
                log.warning("image catalogue cut at %d images (the bound); narrow the filters", max_images)
                return Catalogue(images[:max_images], complete=False)
            marker = fresh[-1].id

    async def get_image(self, image_id: str) -> Image | None:
        images = await self.list_images(id=image_id)
        return next((image for image in images if image.id == image_id), None)

    async def flavor_extra_specs(self, flavor_id: str) -> dict[str, str]:
        """Nova `os-extra_specs` of a flavor: `ecs:instance_architecture` is `arm64` on Kunpeng (ARM) flavors only."""
        call = _Call(
            "ecs", "GET", f"/v2.1/{self._pid}/flavors/{_q(flavor_id)}/os-extra_specs", operation="flavor_extra_specs"
        )
        data = await self._read(call)
        specs = data.get("extra_specs") if isinstance(data, dict) else None
        if not isinstance(specs, dict):
            raise _bad_response(call, 200, "no 'extra_specs' object in the body")
        return {str(k): str(v) for k, v in specs.items() if v is not None}

    async def get_volume(self, volume_id: str) -> Volume:
        call = _Call("evs", "GET", f"/v2/{self._pid}/cloudvolumes/{_q(volume_id)}", operation="get_volume")
        data = await self._read(call)
        return _parse(Volume, _field(data, "volume", call), call)

    async def find_images(self, *, name: str | None = None, tag: tuple[str, str] | None = None) -> list[Image]:
        """This project's private images by exact name and/or one tag, in any status (queued, saving, killed too):
        how a backup is found again after a restart, or when the answer to its creation was lost."""
        query = ImageQuery(
            imagetype="private",
            status=None,
            virtual_env_type=None,
            name=name,
            tag=f"{tag[0]}={tag[1]}" if tag else None,
        )
        return (await self.catalogue(query)).images

    async def image_quota(self) -> ImageQuota:
        """Private images used and allowed in this region (`GET /v1/cloudimages/quota`)."""
        call = _Call("ims", "GET", "/v1/cloudimages/quota", operation="image_quota")
        data = await self._read(call)
        quotas = _field(data, "quotas", call)
        for item in _list(quotas, "resources", call):
            if isinstance(item, dict) and item.get("type") == "image":
                return _parse(ImageQuota, item, call)
        raise _bad_response(call, 200, "no quota of type 'image'")

    async def get_image_job(self, job_id: str) -> ImageJob:
        """An IMS job (`GET /v1/cloudimages/job/{job_id}`); its record expires like ECS jobs' (IMG.0023 then)."""
        call = _Call("ims", "GET", f"/v1/cloudimages/job/{_q(job_id)}", operation="get_image_job")
        data = await self._read(call)
        if not isinstance(data, dict):
            raise _bad_response(call, 200, "the job answer is not a JSON object")
        return _parse(ImageJob, {**data, "job_id": data.get("job_id") or job_id}, call)

    async def get_job(self, job_id: str) -> Job:
        call = _Call("ecs", "GET", f"/v1/{self._pid}/jobs/{_q(job_id)}", operation="get_job")
        data = await self._read(call)
        if not isinstance(data, dict):
            raise _bad_response(call, 200, "the job answer is not a JSON object")
        # Tolerate an answer that omits its own id (the SDK would give job_id=None): we know which job we asked for.
        return _parse(Job, {"job_id": job_id, **data} if not data.get("job_id") else data, call)

    # ------------------------------------------------------------------------------------------------ writes

    async def stop_server(self, server_id: str, stop_type: StopType = StopType.SOFT) -> str:
        """The stop job's id. Never retried once sent: a lost answer raises OutcomeUnknownError."""
        call = _Call(
            "ecs",
            "POST",
            f"/v1/{self._pid}/cloudservers/action",
            body=stop_body([server_id], StopType(stop_type)),
            operation="stop_server",
            server_id=server_id,
        )
        return await self._write_job(call)

    async def start_server(self, server_id: str) -> str:
        """The start job's id. Never retried once sent: a lost answer raises OutcomeUnknownError."""
        call = _Call(
            "ecs",
            "POST",
            f"/v1/{self._pid}/cloudservers/action",
            body=start_body([server_id]),
            operation="start_server",
            server_id=server_id,
        )
        return await self._write_job(call)

    async def create_image(
        self, server_id: str, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> str:
        """A private image of the server's system disk (IMS `POST /v2/cloudimages/action`); returns the job id.

        Never retried once sent: a lost answer raises OutcomeUnknownError, and the caller finds the image by its
        name or tags instead of creating a second one."""
        call = _Call(
            "ims",
            "POST",
            "/v2/cloudimages/action",
            body=create_image_body(server_id, name, description, tags or {}),
            operation="create_image",
            server_id=server_id,
        )
        return await self._write_job(call)

    async def delete_image(self, image_id: str) -> None:
        """`DELETE /v2/images/{id}`: 204 whether or not the image existed, so repeating it is safe; the image leaves
        the list a little later (see `image_gone`)."""
        call = _Call("ims", "DELETE", f"/v2/images/{_q(image_id)}", operation="delete_image")
        await self._read(call, expect_json=False)

    async def image_gone(self, image_id: str) -> bool:
        """True once the image is no longer listed (or listed as deleted): how a deletion is confirmed."""
        image = await self.get_image(image_id)
        return image is None or image.status == "deleted"

    async def change_os(self, server_id: str, option: ChangeOsOption, *, cloud_init: bool = False) -> str:
        """The change job's id; v1 for images without Cloud-Init, v2 with it. Never retried once sent."""
        version = "v2" if cloud_init else "v1"
        secret = option.adminpass.get_secret_value() if option.adminpass else ""
        call = _Call(
            "ecs",
            "POST",
            f"/{version}/{self._pid}/cloudservers/{_q(server_id)}/changeos",
            body=option.to_body(cloud_init=cloud_init),
            operation="change_os",
            server_id=server_id,
            secrets=(secret,) if secret else (),
        )
        try:
            job_id = await self._write_job(call)
        except OutcomeUnknownError:
            metrics.change_os(cloud_init, "unknown")
            raise
        except CloudUnreachableError:
            metrics.change_os(cloud_init, "unreachable")
            raise
        except CloudAPIError:
            metrics.change_os(cloud_init, "refused")
            raise
        metrics.change_os(cloud_init, "accepted")
        return job_id

    # ------------------------------------------------------------------------------------------------ plumbing

    async def _read(self, call: _Call, *, expect_json: bool = True) -> Any:
        """Send with retries (reads, and idempotent writes); returns the decoded JSON of a success answer."""
        policy = self._retry
        deadline = time.monotonic() + policy.total_timeout
        last_error: CloudAPIError | None = None
        last_reason = ""
        for attempt in range(policy.max_attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            retry_after: float | None = None
            try:
                response = await self._send(call, seconds=min(self._timeout, remaining))
            except httpx.TransportError as exc:
                last_error, last_reason = None, _describe(exc)
            else:
                error = _error_of(response)
                if error is None:
                    return _json(response, call) if expect_json else None
                if not _retryable(error):
                    raise _scrub(error, call)
                last_error, last_reason = error, str(error.status)
                retry_after = error.retry_after if isinstance(error, ThrottledError) else None
            if attempt + 1 >= policy.max_attempts:
                break
            delay = retry_after if retry_after is not None else policy.backoff(attempt)
            if time.monotonic() + delay >= deadline:
                break
            log.debug("cloud %s retry %d in %.2fs (%s)", call.operation, attempt + 1, delay, last_reason)
            metrics.cloud_retry(call.operation)
            await asyncio.sleep(delay)
        if last_error is not None:
            raise _scrub(last_error, call)
        raise CloudUnreachableError(call.operation, last_reason or "the retry deadline passed")

    async def _write_job(self, call: _Call) -> str:
        """POST without blind retries. Only a connection that never opened is retried (nothing was sent)."""
        policy = self._retry
        deadline = time.monotonic() + policy.total_timeout
        attempt = 0
        while True:
            try:
                response = await self._send(call, seconds=self._timeout)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left this process: safe to report as unreachable, or to try again.
                attempt += 1
                delay = policy.backoff(attempt - 1)
                if attempt >= policy.max_attempts or time.monotonic() + delay >= deadline:
                    raise CloudUnreachableError(call.operation, _describe(exc)) from None
                metrics.cloud_retry(call.operation)
                await asyncio.sleep(delay)
            except httpx.TransportError as exc:
                # Read timeout, dropped connection, protocol error: the cloud may have acted on it.
                raise OutcomeUnknownError(call.operation, call.server_id, _describe(exc)) from None
        error = _error_of(response)
        if error is not None:
            raise _scrub(error, call)
        try:
            data = response.json()
        except ValueError:
            data = None
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not job_id:
            # A success status without a job id: the cloud accepted *something*; only reading can tell what.
            raise OutcomeUnknownError(
                call.operation, call.server_id, f"HTTP {response.status_code} answer without a job_id"
            )
        return job_id

    async def _send(self, call: _Call, *, seconds: float) -> httpx.Response:
        """One signed exchange; temporary keys the gateway refuses (401) are refreshed and sent once more."""
        response = await self._send_signed(call, seconds=seconds, credentials=await self._source.get())
        if response.status_code == 401 and not isinstance(self._source, Credentials):
            # The gateway refused the request before any service saw it, so sending it again is safe.
            fresh = await self._source.get(refresh=True)
            response = await self._send_signed(call, seconds=seconds, credentials=fresh)
        return response

    async def _send_signed(self, call: _Call, *, seconds: float, credentials: Credentials) -> httpx.Response:
        base = getattr(self._endpoints, call.service)
        parts = urlsplit(base)
        path = parts.path.rstrip("/") + call.path
        headers = {
            "Content-Type": JSON_POST if call.method == "POST" else JSON_GET,
            "User-Agent": USER_AGENT,
            "X-Project-Id": credentials.project_id,
        }
        if credentials.security_token is not None:
            headers["X-Security-Token"] = credentials.security_token.get_secret_value()  # signed, as the SDK does
        signed = signer.sign(
            access_key=credentials.access_key,
            secret_key=credentials.secret_key.get_secret_value(),
            method=call.method,
            host=parts.netloc,
            path=path,
            query=call.query,
            headers=headers,
            body=call.body,
        )
        # The query sent is exactly the canonical string that was signed (the SDK does the same).
        raw = path + (f"?{signed.query_string}" if signed.query_string else "")
        url = httpx.URL(base).copy_with(raw_path=raw.encode("ascii"))
        request = self._http.build_request(
            call.method,
            url,
            headers=signed.headers,
            content=call.body if call.method == "POST" else None,
            timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0)),
        )
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
            await response.aread()
        except httpx.TransportError as exc:
            metrics.cloud_call(call.operation, None)
            log.debug(
                "cloud %s %s failed after %.3fs: %s",
                call.method,
                path,
                time.perf_counter() - started,
                type(exc).__name__,
            )
            raise
        metrics.cloud_call(call.operation, response.status_code)
        if response.status_code not in (401, 403):
            self.last_accepted = time.monotonic()  # the gateway took the signature: the keys work (readiness)
        log.debug(
            "cloud %s %s -> %d in %.3fs request_id=%s",
            call.method,
            path,
            response.status_code,
            time.perf_counter() - started,
            request_id_from(response.headers) or "-",
        )
        return response


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """IMS list filters by their documented names; None leaves a filter out. `name` is an exact match."""

    imagetype: Literal["gold", "private", "shared", "market"] | None = None
    status: str | None = "active"
    virtual_env_type: Literal["FusionCompute", "DataImage", "Ironic", "IsoImage"] | None = "FusionCompute"
    architecture: Literal["x86", "arm"] | None = None
    os_type: str | None = None
    platform: str | None = None
    name: str | None = None
    flavor_id: str | None = None
    tag: str | None = None  # "key=value"

    def pairs(self) -> list[tuple[str, str]]:
        return _pairs(
            __imagetype=self.imagetype,
            status=self.status,
            virtual_env_type=self.virtual_env_type,
            architecture=self.architecture,
            __os_type=self.os_type,
            __platform=self.platform,
            name=self.name,
            flavor_id=self.flavor_id,
            tag=self.tag,
        )


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Images from a paged listing; `complete` is False when the bound stopped the paging (and that was logged)."""

    images: list[Image]
    complete: bool


def _pairs(**params: object) -> list[tuple[str, str]]:
    """Query pairs without the Nones; bools as the SDK writes them (true/false)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        pairs.append((key, text))
    return pairs


def _describe(exc: httpx.TransportError) -> str:
    """Exception class and text, without the URL (it carries nothing secret, but keep it short)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_of(response: httpx.Response) -> CloudAPIError | None:
    """HTTP >= 400 is an error like the SDK; so is a 2xx whose body is the Common.0024 flow-limit answer."""
    if response.status_code >= 400:
        return error_from_response(response.status_code, response.content, response.headers)
    if b"Common.0024" in response.content:
        code, _ = parse_error_fields(response.status_code, response.content)
        if code == "Common.0024":
            return error_from_response(response.status_code, response.content, response.headers)
    return None


def _retryable(error: CloudAPIError) -> bool:
    return isinstance(error, ThrottledError) or error.status >= 500


def _scrub(error: CloudAPIError, call: _Call) -> CloudAPIError:
    """Cloud messages sometimes echo request fields; never let a password ride along in one."""
    for secret in call.secrets:
        if secret and secret in error.message:
            error.message = error.message.replace(secret, "**********")
            error.args = (error.status, error.code, error.message, error.request_id)
    return error


def _bad_response(call: _Call, status: int, what: str) -> CloudAPIError:
    return CloudAPIError(status, "InvalidResponse", f"Unexpected answer to {call.operation}: {what}")


def _json(response: httpx.Response, call: _Call) -> Any:
    if not response.content.strip():
        raise _bad_response(call, response.status_code, "empty body")
    try:
        return json.loads(response.content)
    except ValueError:
        raise _bad_response(call, response.status_code, "the body is not JSON") from None


def _field(data: Any, key: str, call: _Call) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise _bad_response(call, 200, f"no {key!r} object in the body")
    return data[key]


def _list(data: Any, key: str, call: _Call) -> list[Any]:
    if not isinstance(data, dict):
        raise _bad_response(call, 200, "the body is not a JSON object")
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad_response(call, 200, f"{key!r} is not a list")
    return items


def _parse(model: type[M], data: Any, call: _Call) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "(root)" for err in exc.errors()[:5])
        raise _bad_response(call, 200, f"{model.__name__} fields not understood: {fields}") from None
