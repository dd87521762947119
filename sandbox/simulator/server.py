"""The simulator's HTTP face: ECS, IMS, EVS and jobs on one aiohttp port, plus the `/_sim/` admin API.

Each cloud request goes through the same gate the real API gateway applies (route, AK/SK signature, project),
then the injected faults, then the handler; every answer carries `X-Request-Id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import MultiMapping
from pydantic import SecretStr, ValidationError

from sandbox.simulator import imaging, render, tags
from sandbox.simulator.auth import check_signature
from sandbox.simulator.bodies import int_param, parse_action, parse_change_os
from sandbox.simulator.clock import Clock, SystemClock, iso_millis
from sandbox.simulator.credentials import Credential, CredentialBook
from sandbox.simulator.errors import SimError, gateway_error
from sandbox.simulator.faults import ROUTES, FaultBook, FaultSpec
from sandbox.simulator.fixtures import FixtureError, Fixtures, default_fixtures_path, load_fixtures
from sandbox.simulator.flavors import catalogue as flavor_catalogue
from sandbox.simulator.flavors import flavor_body, parse_flavor
from sandbox.simulator.state import SimState

Reply = tuple[int, dict[str, Any] | bytes]  # bytes: JSON already encoded (the image catalogue)
log = logging.getLogger(__name__)
_P = r"(?P<project_id>[^/]+)"


@dataclass(frozen=True)
class Ctx:
    state: SimState
    match: dict[str, str]
    query: MultiMapping[str]
    body: bytes
    raw_query: list[tuple[str, str]]
    user_id: str


def _show_server(ctx: Ctx) -> Reply:
    return 200, {"server": render.server(ctx.state, ctx.state.get_server(ctx.match["server_id"]))}


def _list_servers(ctx: Ctx) -> Reply:
    q = ctx.query
    count, servers = ctx.state.list_servers(
        name=q.get("name") or None,
        status=q.get("status") or None,
        limit=int_param(q, "limit", 25, low=1, high=1000),
        offset=int_param(q, "offset", 1, low=0, high=1_000_000),
        marker=q.get("marker") or None,
    )
    return 200, {"count": count, "servers": [render.server(ctx.state, s) for s in servers]}


def _server_action(ctx: Ctx) -> Reply:
    action = parse_action(ctx.body)
    if action.action == "os-stop":
        job_id = ctx.state.stop_servers(action.server_ids, hard=action.hard)
    else:
        job_id = ctx.state.start_servers(action.server_ids)
    return 200, {"job_id": job_id}


def _servers_by_tag(ctx: Ctx) -> Reply:
    return 200, tags.answer(ctx.state.servers.values(), tags.parse_tag_query(ctx.body))


def _change_os(cloud_init: bool) -> Callable[[Ctx], Reply]:
    def handler(ctx: Ctx) -> Reply:
        request = parse_change_os(ctx.body, cloud_init=cloud_init)
        return 200, {"job_id": ctx.state.change_os(ctx.match["server_id"], request, cloud_init=cloud_init)}

    return handler


def _show_job(ctx: Ctx) -> Reply:
    state = ctx.state
    job = state.get_job(ctx.match["job_id"])
    if job.job_type.startswith("ims"):  # the deprecated IMS job path is the same as ECS's
        return 200, imaging.render_job(state, job)
    return 200, render.job(job, sub_jobs=state.switches.changeos_sub_jobs, entities=state.faults.job_entities)


def _create_image(ctx: Ctx) -> Reply:
    return 200, {"job_id": imaging.create_image(ctx.state, imaging.parse_create(ctx.body))}


def _show_image_job(ctx: Ctx) -> Reply:
    return 200, imaging.render_job(ctx.state, imaging.image_job(ctx.state, ctx.match["job_id"]))


def _delete_image(ctx: Ctx) -> Reply:
    imaging.check_delete_body(ctx.body)
    imaging.delete_image(ctx.state, ctx.match["image_id"])
    return 204, b""


def _image_tags(ctx: Ctx) -> Reply:
    return 200, {"tags": imaging.image_tags(ctx.state, ctx.match["image_id"])}


def _image_tag_action(ctx: Ctx) -> Reply:
    imaging.tag_action(ctx.state, ctx.match["image_id"], ctx.body)
    return 204, b""


def _add_image_tag(ctx: Ctx) -> Reply:
    imaging.add_tag(ctx.state, ctx.match["image_id"], ctx.body)
    return 204, b""


def _delete_image_tag(ctx: Ctx) -> Reply:
    imaging.delete_tag(ctx.state, ctx.match["image_id"], ctx.match["key"])
    return 204, b""


def _list_keypairs(ctx: Ctx) -> Reply:
    return 200, {"keypairs": [render.keypair(k) for k in ctx.state.keypairs_of(ctx.user_id)]}


def _list_images(ctx: Ctx) -> Reply:
    state = ctx.state
    page = state.list_images(ctx.raw_query)
    encoded = state.catalogue.encoded
    parts = [b'{"images": [', b", ".join(encoded[i] for i in page.ids), b"]"]
    link = state.switches.images_page_link
    if page.ids and not page.last and link != "none":
        nxt = page.ids[-1]
        if link == "page_info":
            parts.append(b', "page_info": ' + json.dumps({"next_marker": nxt}).encode())
        else:
            others = [(k, v) for k, v in ctx.raw_query if k != "marker"]
            query = urlencode([*others, ("marker", nxt)])
            parts.append(b', "next": ' + json.dumps(f"/v2/cloudimages?{query}").encode())
    parts.append(b"}")
    return 200, b"".join(parts)


def _image_quota(ctx: Ctx) -> Reply:
    used, quota = ctx.state.private_image_count(), ctx.state.switches.image_quota
    return 200, {"quotas": {"resources": [{"type": "image", "used": used, "quota": quota, "min": 1, "max": 1000}]}}


def _list_flavors(ctx: Ctx) -> Reply:
    return 200, {"flavors": [flavor_body(f) for f in flavor_catalogue()]}


def _flavor_extra_specs(ctx: Ctx) -> Reply:
    flavor = parse_flavor(ctx.match["flavor_id"])
    if flavor is None:
        raise SimError(404, "Ecs.0040", f"The flavor {ctx.match['flavor_id']} does not exist.")
    return 200, {"extra_specs": flavor.extra_specs()}


def _show_volume(ctx: Ctx) -> Reply:
    return 200, {"volume": render.volume(ctx.state, ctx.state.get_volume(ctx.match["volume_id"]))}


ROUTE_TABLE: list[tuple[str, re.Pattern[str], str, Callable[[Ctx], Reply]]] = [
    ("GET", re.compile(rf"^/v1/{_P}/cloudservers/detail$"), "list_servers", _list_servers),
    ("GET", re.compile(rf"^/v1/{_P}/cloudservers/flavors$"), "list_flavors", _list_flavors),
    (
        "GET",
        re.compile(rf"^/v2\.1/{_P}/flavors/(?P<flavor_id>[^/]+)/os-extra_specs$"),
        "show_flavor_extra_specs",
        _flavor_extra_specs,
    ),
    ("POST", re.compile(rf"^/v1/{_P}/cloudservers/action$"), "server_action", _server_action),
    (
        "POST",
        re.compile(rf"^/v1/{_P}/cloudservers/resource_instances/action$"),
        "list_servers_by_tag",
        _servers_by_tag,
    ),
    ("GET", re.compile(rf"^/v1/{_P}/cloudservers/(?P<server_id>[^/]+)$"), "show_server", _show_server),
    ("POST", re.compile(rf"^/v1/{_P}/cloudservers/(?P<server_id>[^/]+)/changeos$"), "change_os_v1", _change_os(False)),
    ("POST", re.compile(rf"^/v2/{_P}/cloudservers/(?P<server_id>[^/]+)/changeos$"), "change_os_v2", _change_os(True)),
    ("GET", re.compile(rf"^/v1/{_P}/jobs/(?P<job_id>[^/]+)$"), "show_job", _show_job),
    ("GET", re.compile(rf"^/v2\.1/{_P}/os-keypairs$"), "list_keypairs", _list_keypairs),
    ("GET", re.compile(r"^/v2/cloudimages$"), "list_images", _list_images),
    ("GET", re.compile(r"^/v1/cloudimages/quota$"), "image_quota", _image_quota),
    ("GET", re.compile(rf"^/v2/{_P}/cloudvolumes/(?P<volume_id>[^/]+)$"), "show_volume", _show_volume),
    ("POST", re.compile(r"^/v2/cloudimages/action$"), "create_image", _create_image),
    ("GET", re.compile(r"^/v1/cloudimages/job/(?P<job_id>[^/]+)$"), "show_image_job", _show_image_job),
    ("DELETE", re.compile(r"^/v2/images/(?P<image_id>[^/]+)$"), "delete_image", _delete_image),
    ("GET", re.compile(rf"^/v2/{_P}/images/(?P<image_id>[^/]+)/tags$"), "image_tags", _image_tags),
    ("POST", re.compile(rf"^/v2/{_P}/images/(?P<image_id>[^/]+)/tags/action$"), "image_tag_action", _image_tag_action),
    ("POST", re.compile(rf"^/v2/{_P}/images/(?P<image_id>[^/]+)/tags$"), "add_image_tag", _add_image_tag),
    (
        "DELETE",
        re.compile(rf"^/v2/{_P}/images/(?P<image_id>[^/]+)/tags/(?P<key>[^/]+)$"),
        "delete_image_tag",
        _delete_image_tag,
    ),
]
assert {name for _, _, name, _ in ROUTE_TABLE} == set(ROUTES)


def resolve(method: str, path: str) -> tuple[str, dict[str, str], Callable[[Ctx], Reply]] | None:
    for route_method, pattern, name, handler in ROUTE_TABLE:
        if route_method == method:
            found = pattern.match(path)
            if found:
                return name, found.groupdict(), handler
    return None


def _json(status: int, payload: Any, request_id: str, headers: dict[str, str] | None = None) -> web.Response:
    if status == 204:
        response = web.Response(status=204, headers=headers)
    elif isinstance(payload, bytes):
        response = web.Response(body=payload, status=status, headers=headers, content_type="application/json")
    else:
        response = web.json_response(payload, status=status, headers=headers)
    response.headers["X-Request-Id"] = request_id
    return response


class SimulatorServer:
    """A local Huawei Cloud (ECS, IMS, EVS, jobs) for tests, the demo and sandbox mode. Not for production data."""

    def __init__(
        self,
        fixtures: Path | Fixtures | None = None,
        *,
        speed: float = 1.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        max_logged_requests: int = 10_000,
        catalogue_size: int | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0 (1 is real time; 60 makes a minute last a second)")
        self._fixtures_source = fixtures
        self.catalogue_size = catalogue_size  # None: the fixtures' [catalogue] size
        self.speed, self.seed, self.host, self.port = speed, seed, host, port
        self.clock: Clock = clock or SystemClock()
        self.requests: deque[dict[str, Any]] = deque(maxlen=max_logged_requests)
        self._metadata_tokens: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._load()

    def __repr__(self) -> str:
        return f"SimulatorServer(base_url={self.base_url!r}, speed={self.speed}, seed={self.seed})"

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        source = self._fixtures_source
        self.fixtures = source if isinstance(source, Fixtures) else load_fixtures(source)
        self.faults = FaultBook(random.Random(f"faults-{self.seed}"))
        for spec in self.fixtures.faults:
            self.faults.add(spec)
        self.state = SimState(
            self.fixtures, self.clock, self.faults, speed=self.speed, seed=self.seed, catalogue_size=self.catalogue_size
        )
        sim = self.fixtures.simulator
        self.credentials = CredentialBook(
            Credential(sim.access_key, sim.secret_key.get_secret_value()), self.fixtures.agency, seed=self.seed
        )

    def reset(self) -> None:
        """Fixtures reloaded, faults back to the fixtures' ones, request log cleared (the clock keeps going)."""
        self._load()
        self.requests.clear()

    @property
    def project_id(self) -> str:
        return self.fixtures.simulator.project_id

    @property
    def access_key(self) -> str:
        return self.fixtures.simulator.access_key

    @property
    def secret_key(self) -> SecretStr:
        return self.fixtures.simulator.secret_key

    @property
    def user_id(self) -> str:
        return self.fixtures.simulator.user_id

    # ------------------------------------------------------------------ lifecycle
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=12 * 1024 * 1024)  # the gateway's limit for signed bodies
        app.router.add_get("/_sim/requests", self._admin_requests)
        app.router.add_delete("/_sim/requests", self._admin_clear_requests)
        app.router.add_get("/_sim/faults", self._admin_faults)
        app.router.add_post("/_sim/faults", self._admin_add_fault)
        app.router.add_delete("/_sim/faults", self._admin_clear_faults)
        app.router.add_post("/_sim/reset", self._admin_reset)
        app.router.add_get("/_sim/state", self._admin_state)
        app.router.add_post("/_sim/advance", self._admin_advance)
        app.router.add_get("/_sim/switches", self._admin_switches)
        app.router.add_post("/_sim/switches", self._admin_set_switches)
        app.router.add_post("/_sim/credentials", self._admin_issue_credentials)
        app.router.add_put("/meta-data/latest/api/token", self._metadata_token)
        app.router.add_get("/openstack/latest/securitykey", self._metadata_securitykey)
        app.router.add_route("*", "/{tail:.*}", self._cloud)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        self.base_url = f"http://{shown}:{self.port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ the cloud
    async def _cloud(self, request: web.Request) -> web.StreamResponse:
        request_id = os.urandom(16).hex()
        path = request.rel_url.raw_path
        found = resolve(request.method, request.rel_url.path)
        route = found[0] if found else None
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.rel_url.path,
            "route": route,
            "status": None,
            "time": iso_millis(self.clock.now()),
            "request_id": request_id,
        }
        self.requests.append(entry)
        try:
            if found is None:
                raise gateway_error(404, "APIGW.0101", "The API does not exist or has not been published.")
            name, match, handler = found
            try:
                body = await request.read()
            except ConnectionResetError:  # the caller went away mid-request: as in the cloud, nothing happened
                entry["cut"] = True
                return web.Response(status=400)
            credential, denied = check_signature(
                credentials=self.credentials,
                method=request.method,
                path=path,
                query=parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True),
                headers=request.headers,
                body=body,
            )
            if denied is not None:
                raise denied
            assert credential is not None
            entry["credential"] = credential.source
            self._check_project(match.get("project_id"), request.headers.get("X-Project-Id"))
            latency = self.faults.latency(name)
            if latency:
                await asyncio.sleep(latency)
            injected = self.faults.injected_error(name)
            if injected is not None:
                headers = {"Retry-After": str(injected.retry_after)} if injected.retry_after is not None else {}
                shape: Literal["ecs", "gateway"] = "gateway" if injected.code.startswith("APIGW.") else "ecs"
                raise SimError(injected.status, injected.code, injected.message, shape, headers)
            self.state.advance()
            raw_query = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
            user_id = self.fixtures.simulator.user_id  # every credential the simulator knows acts as this user
            status, payload = handler(Ctx(self.state, match, request.query, body, raw_query, user_id))
            if self.faults.take_drop(name):
                entry["dropped"] = True
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=status)
            entry["status"] = status
            return _json(status, payload, request_id)
        except web.HTTPException as exc:  # e.g. a body over the gateway's 12 MB limit
            return self._refuse(entry, request_id, gateway_error(exc.status, "APIGW.0201", exc.reason))
        except SimError as err:
            return self._refuse(entry, request_id, err)
        except Exception:
            log.exception("simulator bug while handling %s %s", request.method, request.rel_url.path)
            return self._refuse(entry, request_id, SimError(500, "Common.0001", "System exception (simulator)."))

    def _refuse(self, entry: dict[str, Any], request_id: str, err: SimError) -> web.Response:
        entry["status"] = err.status
        entry["error_code"] = err.code
        return _json(err.status, err.body(request_id), request_id, err.headers)

    def _check_project(self, path_project: str | None, header_project: str | None) -> None:
        ours = self.project_id
        for given, where in ((path_project, "URL"), (header_project, "X-Project-Id header")):
            if given is not None and given != ours:
                raise SimError(
                    400,
                    "Common.0018",
                    f"The project ID in the {where} ({given}) is not a project of these credentials. "
                    "Use the project ID of the region (HUAWEICLOUD_PROJECT_ID).",
                )

    # ------------------------------------------------------------------ admin API (no signature: sandbox only)
    async def _admin_requests(self, request: web.Request) -> web.Response:
        route = request.query.get("route")
        items = [e for e in self.requests if route is None or e["route"] == route]
        return web.json_response({"count": len(items), "requests": items})

    async def _admin_clear_requests(self, request: web.Request) -> web.Response:
        self.requests.clear()
        return web.json_response({"cleared": True})

    async def _admin_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _admin_add_fault(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read())
        except ValueError:
            return _admin_error('the body must be JSON, e.g. {"route": "show_job", "error_rate": 0.5}')
        items = data if isinstance(data, list) else [data]
        try:
            specs = [FaultSpec.model_validate(item) for item in items]
        except ValidationError as exc:
            return _admin_error(
                "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
            )
        ids = [rule_id for spec in specs for rule_id in self.faults.add(spec)]
        expired = 0
        for spec in specs:
            if spec.expire_jobs is not None:
                self.state.advance()
                expired += self.state.expire_jobs(spec.expire_jobs.job_id)
        extra = {"expired_jobs": expired} if any(spec.expire_jobs for spec in specs) else {}
        return web.json_response({"added": ids, **extra, **self.faults.to_json()}, status=201)

    async def _admin_switches(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.switches.model_dump())

    async def _admin_set_switches(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return _admin_error('the body must be a JSON object of switches, e.g. {"changeos_sub_jobs": false}')
        try:
            switches = self.state.set_switches(data)
        except ValidationError as exc:
            return _admin_error(
                "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
            )
        return web.json_response(switches.model_dump())

    async def _admin_issue_credentials(self, request: web.Request) -> web.Response:
        """Temporary AK/SK + security token, shaped like IAM's `POST /v3.0/OS-CREDENTIAL/securitytokens` (201)."""
        try:
            raw = await request.read()
            ttl = float(json.loads(raw).get("ttl", 900)) if raw.strip() else 900.0
        except (ValueError, AttributeError, TypeError):
            return _admin_error('the body must be {"ttl": seconds} (negative: already expired)')
        credential = self.credentials.issue_temporary(ttl)
        return web.json_response({"credential": credential.to_json()}, status=201)

    # ------------------------------------------------------------------ ECS metadata service (agency credentials)
    async def _metadata(
        self, request: web.Request, route: str, answer: Callable[[], tuple[int, str, str]]
    ) -> web.Response:
        """Not behind the API gateway: no signature. Faults apply only when a rule names the route."""
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.rel_url.path,
            "route": route,
            "status": None,
            "time": iso_millis(self.clock.now()),
            "request_id": "",
        }
        self.requests.append(entry)
        latency = self.faults.latency(route)
        if latency:
            await asyncio.sleep(latency)
        injected = self.faults.injected_error(route)
        if injected is not None:
            status, text, kind = injected.status, injected.message, "text/plain"
        else:
            status, text, kind = answer()
        entry["status"] = status
        return web.Response(status=status, text=text, content_type=kind)

    async def _metadata_token(self, request: web.Request) -> web.Response:
        def answer() -> tuple[int, str, str]:
            mode = self.state.switches.metadata_token
            if mode == "unsupported":
                return 404, "Not Found", "text/plain"
            raw = request.headers.get("X-Metadata-Token-Ttl-Seconds", "")
            if not raw.isdigit() or not 1 <= int(raw) <= 21600:
                return 400, "X-Metadata-Token-Ttl-Seconds must be 1 to 21600 seconds.", "text/plain"
            token = os.urandom(24).hex()
            self._metadata_tokens[token] = time.time() + int(raw)
            return 200, token, "text/plain"

        return await self._metadata(request, "metadata_token", answer)

    async def _metadata_securitykey(self, request: web.Request) -> web.Response:
        def answer() -> tuple[int, str, str]:
            mode = self.state.switches.metadata_token
            token = request.headers.get("X-Metadata-Token")
            known = token is not None and self._metadata_tokens.get(token, 0) > time.time()
            if (token is not None and mode != "unsupported" and not known) or (mode == "required" and not known):
                return 401, "The metadata token is missing, invalid or expired; PUT /meta-data/latest/api/token.", (
                    "text/plain"
                )
            if not self.fixtures.agency.name:
                return 401, "Please configure Cloud Service Agency first.", "text/plain"
            credential = self.credentials.agency_current()
            return 200, json.dumps({"credential": credential.to_json()}), "application/json"

        return await self._metadata(request, "metadata_securitykey", answer)

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response(self.faults.to_json())

    async def _admin_reset(self, request: web.Request) -> web.Response:
        try:
            self.reset()
        except FixtureError as exc:
            return _admin_error(str(exc))
        return web.json_response({"reset": True})

    async def _admin_state(self, request: web.Request) -> web.Response:
        self.state.advance()
        return web.json_response(self.state.summary())

    async def _admin_advance(self, request: web.Request) -> web.Response:
        try:
            seconds = float(json.loads(await request.read())["seconds"])
        except (ValueError, KeyError, TypeError):
            return _admin_error('the body must be {"seconds": N}: simulated seconds to jump forward')
        advance = getattr(self.clock, "advance", None)
        if advance is None or seconds < 0:
            return _admin_error("this clock cannot be moved (or seconds < 0)")
        advance(seconds)
        self.state.advance()
        return web.json_response({"now": iso_millis(self.clock.now())})


def _admin_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def run_forever(
    *,
    fixtures: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    speed: float = 1.0,
    seed: int = 0,
    catalogue: int | None = None,
) -> None:
    """`ecsbot simulator`: serve until cancelled, after printing how to point a client at it."""
    try:
        server = SimulatorServer(fixtures, speed=speed, seed=seed, host=host, port=port, catalogue_size=catalogue)
    except (FixtureError, ValueError) as exc:
        print(f"ecsbot simulator: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        base_url = await server.start()
    except OSError as exc:
        print(
            f"ecsbot simulator: cannot listen on {host}:{port}: {exc.strerror}. Pick another --port.", file=sys.stderr
        )
        raise SystemExit(2) from None
    source = fixtures or default_fixtures_path()
    lines = [
        f"Huawei Cloud simulator (ECS, IMS, EVS, jobs) on {base_url}  speed={speed} seed={seed} fixtures={source} "
        f"images={len(server.state.catalogue)}",
        f"ECS_ENDPOINT={base_url}",
        f"IMS_ENDPOINT={base_url}",
        f"EVS_ENDPOINT={base_url}",
        f"HUAWEICLOUD_PROJECT_ID={server.project_id}",
        f"HUAWEICLOUD_SDK_AK={server.access_key}",
        f"HUAWEICLOUD_SDK_SK={server.secret_key.get_secret_value()}",
        f"HUAWEICLOUD_USER_ID={server.user_id}",
        f"ECS metadata service (agency credentials): {base_url}/openstack/latest/securitykey",
        f"Admin API (no auth, sandbox only): {base_url}/_sim/requests, /_sim/faults, /_sim/switches, /_sim/state, "
        "/_sim/credentials, /_sim/reset",
    ]
    if host not in ("127.0.0.1", "localhost", "::1"):
        lines.append(f"WARNING: bound to {host}: anyone who can reach this port can use the unauthenticated admin API.")
    for line in lines:
        print(line, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
