"""The PostgreSQL engine (psycopg 3, async): any number of bot processes share one database.

The guarantees are SQLite's, kept by PostgreSQL's own means: a transition locks its row (`SELECT … FOR UPDATE`),
checks the expected state, updates it and writes the audit row in one transaction; a partial unique index allows
one live request per server; secrets are `bytea` ciphertext. Dates of record come from the bot's clock, as on
SQLite, so replicas keep their clocks in step (NTP), as any lease needs.

Connections come from a pool: a call takes one for one transaction and gives it back, and a connection broken by a
server restart is found on checkout and replaced. A call that cannot reach the database, or waits too long for it,
raises `StoreUnavailable`; nothing else of psycopg leaves this module.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bot.domain.fleet import Rollout
from bot.domain.request import AuditEvent, ChangeRequest, RequestState, new_request_id, utcnow
from bot.store import retention, schema
from bot.store.codec import KINDS, applied, check_fields, check_stamp, plan_transition, request_from_row
from bot.store.health import Availability, describe_database
from bot.store.protocol import (
    EXPORT_PAGE,
    PRUNE_BATCH,
    PRUNED_ACTION,
    PRUNED_ACTOR,
    AuditEntry,
    Pruned,
    RequestNotFound,
    RolloutAudit,
    ServerBusyError,
    StoreError,
)

__all__ = ["PostgresStore", "migrate"]

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 10_000  # the busy timeout's counterpart: no call waits on a lock for longer
POOL_WAIT_S = 3.0  # how long a call waits for a free connection (or the server): within Slack's 3 s ack window
POOL_MAX = 8
MIGRATION_LOCK = 0x6563_7362  # pg_advisory_xact_lock key ("ecsb"): replicas starting together migrate once

_TYPES = {
    "json": "jsonb",
    "datetime": "timestamptz",
    "bool": "boolean",
    "int": "bigint",
    "float": "double precision",
    "text": "text",
}
_LIVE = list(schema.LIVE_VALUES)

P = ParamSpec("P")
R = TypeVar("R")


def _conninfo(url: str) -> str:
    """The URL with our session settings added to any it has: UTC dates, and a bound on every statement."""
    parts = conninfo_to_dict(url)
    ours = f"-c timezone=UTC -c statement_timeout={STATEMENT_TIMEOUT_MS}"
    parts["options"] = f"{parts.get('options') or ''} {ours}".strip()
    parts.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    parts.setdefault("application_name", "ecsbot")
    return make_conninfo("", **parts)


# --- schema versions -------------------------------------------------------------------------------------------------


def _v1(cur: psycopg.Cursor[Any]) -> None:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(name),
            sql.SQL(_TYPES[kind]),
            sql.SQL(" PRIMARY KEY" if name == "id" else " NOT NULL" if name in schema.REQUIRED else ""),
        )
        for name, kind in schema.REQUEST_COLUMNS_V1
    )
    cur.execute(sql.SQL("CREATE TABLE requests ({})").format(columns))
    cur.execute("CREATE INDEX requests_state ON requests(state)")
    cur.execute("CREATE INDEX requests_created ON requests(created_at)")
    cur.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON requests(server_id) WHERE state IN ({})").format(
            sql.Identifier(schema.LIVE_INDEX), sql.SQL(schema.LIVE_SQL)
        )
    )
    cur.execute(
        """CREATE TABLE audit (
            seq bigserial PRIMARY KEY,
            request_id text NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL,
            from_state text, to_state text, detail text NOT NULL DEFAULT '')"""
    )
    cur.execute("CREATE INDEX audit_request ON audit(request_id, seq)")
    cur.execute(
        """CREATE TABLE secrets (
            key text PRIMARY KEY, ciphertext bytea NOT NULL, created_at timestamptz NOT NULL,
            expires_at timestamptz, set_by text, set_via text)"""
    )
    cur.execute(
        """CREATE TABLE page_sessions (
            sid_hash text PRIMARY KEY, draft_id text NOT NULL, os_type text NOT NULL, user_id text NOT NULL,
            created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, state_hash text, binding_hash text,
            nonce text, signed_in_user text)"""
    )
    cur.execute("CREATE INDEX page_sessions_draft ON page_sessions(draft_id)")
    cur.execute(
        """CREATE TABLE leases (
            name text PRIMARY KEY, owner text NOT NULL, expires_at double precision NOT NULL,
            acquired_at double precision)"""
    )
    cur.execute(
        """CREATE TABLE tokens (
            token_hash text PRIMARY KEY, purpose text NOT NULL, subject text NOT NULL, user_id text NOT NULL,
            created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, used_at timestamptz)"""
    )


def _v2(cur: psycopg.Cursor[Any]) -> None:
    cur.execute("ALTER TABLE leases ADD COLUMN epoch bigint NOT NULL DEFAULT 0")


def _v3(cur: psycopg.Cursor[Any]) -> None:
    for name, kind in schema.REQUEST_COLUMNS_V3:
        cur.execute(
            sql.SQL("ALTER TABLE requests ADD COLUMN IF NOT EXISTS {} {}").format(
                sql.Identifier(name), sql.SQL(_TYPES[kind])
            )
        )
    # backing_up became a live state: the index is rebuilt over today's list.
    cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema.LIVE_INDEX)))
    cur.execute(
        sql.SQL("CREATE UNIQUE INDEX {} ON requests(server_id) WHERE state IN ({})").format(
            sql.Identifier(schema.LIVE_INDEX), sql.SQL(schema.LIVE_SQL)
        )
    )


def _v4(cur: psycopg.Cursor[Any]) -> None:
    for name, kind in schema.REQUEST_COLUMNS_V4:
        cur.execute(
            sql.SQL("ALTER TABLE requests ADD COLUMN IF NOT EXISTS {} {}").format(
                sql.Identifier(name), sql.SQL(_TYPES[kind])
            )
        )
    cur.execute(sql.SQL("CREATE UNIQUE INDEX {} ON requests(fleet_key)").format(sql.Identifier(schema.FLEET_KEY_INDEX)))
    cur.execute(
        """CREATE TABLE rollouts (
            id text PRIMARY KEY, version bigint NOT NULL, finished boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, document jsonb NOT NULL)"""
    )
    cur.execute("CREATE INDEX rollouts_unfinished ON rollouts(finished, created_at)")
    cur.execute(
        """CREATE TABLE rollout_audit (
            seq bigserial PRIMARY KEY,
            rollout_id text NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
            at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, detail text NOT NULL DEFAULT '')"""
    )
    cur.execute("CREATE INDEX rollout_audit_rollout ON rollout_audit(rollout_id, seq)")


MIGRATIONS: dict[int, Callable[[psycopg.Cursor[Any]], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4}
assert set(MIGRATIONS) == set(schema.VERSIONS)


def migrate(url: str, *, upto: int = schema.LATEST) -> int:
    """Apply the missing versions up to `upto` in one transaction under an advisory lock; the version now."""
    where = describe_database(url)
    try:
        with psycopg.connect(_conninfo(url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            cur.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY, description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            if current > schema.LATEST:
                raise StoreError(schema.too_new(current, where))
            for version in range(current + 1, upto + 1):
                MIGRATIONS[version](cur)
                cur.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    [version, schema.VERSIONS[version]],
                )
            if upto == schema.LATEST:
                cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = 'requests'"
                )
                missing = schema.missing_columns(r[0] for r in cur.fetchall())
                if missing:
                    raise StoreError(f"requests lacks columns for {', '.join(missing)}: a migration is missing.")
            conn.commit()
            return max(current, upto)
    except psycopg.OperationalError as exc:
        raise StoreError(f"Cannot reach the database {where}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """psycopg's first line (libpq's words), without the connection string that may follow."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


# --- the engine ------------------------------------------------------------------------------------------------------


def _reached(
    fn: Callable[Concatenate[PostgresStore, P], Awaitable[R]],
) -> Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, R]]:
    """Turns "the database could not be reached or timed out" into StoreUnavailable, and keeps `problem` current."""

    @functools.wraps(fn)
    async def run(self: PostgresStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = await fn(self, *args, **kwargs)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise self.availability.down(
                f"The database {self.where} did not answer: {_reason(exc)}. Nothing was changed; try again."
            ) from None
        self.availability.up()
        return result

    return run


DECODE_OFF_LOOP = 64  # rows: more than this are turned into requests on a worker thread (1,000 take ~30 ms of CPU)


async def _decoded(rows: list[dict[str, Any]]) -> list[ChangeRequest]:
    """Rows into requests; a long list is validated on a thread, so a big `live()` does not stall the loop."""
    if len(rows) <= DECODE_OFF_LOOP:
        return [request_from_row(r) for r in rows]
    return await asyncio.to_thread(lambda: [request_from_row(r) for r in rows])


def _encode(name: str, value: Any) -> Any:
    if value is None:
        return None
    kind = KINDS[name]
    if kind == "json":
        return Jsonb(list(value))
    if isinstance(value, Enum):
        return value.value
    return value


class PostgresStore:
    engine = "postgresql"

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        """Migrates at once (a start-up cost, paid once); the pool opens on the first call, on the running loop."""
        self.where = describe_database(url)
        self._clock = clock
        self.version = migrate(url)
        self.availability = Availability()
        self._pool = AsyncConnectionPool(
            _conninfo(url),
            min_size=1,
            max_size=POOL_MAX,
            open=False,
            timeout=POOL_WAIT_S,
            kwargs={"row_factory": dict_row},
            check=AsyncConnectionPool.check_connection,
            name="ecsbot",
        )
        self._opening: asyncio.Lock | None = None
        self._open = False

    @property
    def problem(self) -> str | None:
        return self.availability.problem

    async def _ready(self) -> AsyncConnectionPool[Any]:
        if not self._open:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if not self._open:
                    await self._pool.open(wait=False)
                    self._open = True
        return self._pool

    async def _rows(self, query: str | sql.Composable, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        pool = await self._ready()
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(query, list(params))
            return await cur.fetchall() if cur.description else []

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            await self._pool.close()

    @_reached
    async def ping(self) -> None:
        await self._rows("SELECT 1")

    # --- requests ----------------------------------------------------------------------------------------------------

    @_reached
    async def create(self, req: ChangeRequest, *, actor: str) -> ChangeRequest:
        pool = await self._ready()
        for _attempt in range(5):
            row = {name: _encode(name, getattr(req, name)) for name in KINDS}
            insert = sql.SQL("INSERT INTO requests ({}) VALUES ({})").format(
                sql.SQL(", ").join(map(sql.Identifier, row)), sql.SQL(", ").join(sql.Placeholder() * len(row))
            )
            try:
                async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    await cur.execute(insert, list(row.values()))
                    await _audit(cur, req.id, req.created_at, actor, "created", None, req.state, req.summary())
                    return req
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name == schema.LIVE_INDEX:
                    live = await self._rows(
                        "SELECT id FROM requests WHERE server_id = %s AND state = ANY(%s)", [req.server_id, _LIVE]
                    )
                    if live:
                        raise ServerBusyError(live[0]["id"], req.server_id) from None
                    continue  # the live one ended meanwhile: try again
                if exc.diag.constraint_name == schema.FLEET_KEY_INDEX:
                    raise _FleetKeyTaken(req.fleet_key or "") from None
                req = req.model_copy(update={"id": new_request_id()})  # id collision: draw again
        raise StoreError("could not store the request: its server or id kept colliding")

    @_reached
    async def get(self, request_id: str) -> ChangeRequest | None:
        rows = await self._rows("SELECT * FROM requests WHERE id = %s", [request_id])
        return request_from_row(rows[0]) if rows else None

    @_reached
    async def live_for_server(self, server_id: str) -> ChangeRequest | None:
        rows = await self._rows("SELECT * FROM requests WHERE server_id = %s AND state = ANY(%s)", [server_id, _LIVE])
        return request_from_row(rows[0]) if rows else None

    @_reached
    async def latest_for_server(self, server_id: str) -> ChangeRequest | None:
        rows = await self._rows(
            "SELECT * FROM requests WHERE server_id = %s ORDER BY created_at DESC, id DESC LIMIT 1", [server_id]
        )
        return request_from_row(rows[0]) if rows else None

    @_reached
    async def in_states(self, *states: RequestState | str) -> list[ChangeRequest]:
        return await self._in_states([RequestState(s).value for s in states])

    async def _in_states(self, wanted: list[str]) -> list[ChangeRequest]:
        if not wanted:
            return []
        rows = await self._rows("SELECT * FROM requests WHERE state = ANY(%s) ORDER BY created_at, id", [wanted])
        return await _decoded(rows)

    @_reached
    async def live(self) -> list[ChangeRequest]:
        return await self._in_states(_LIVE)

    @_reached
    async def count_live(self) -> int:
        rows = await self._rows("SELECT count(*) AS n FROM requests WHERE state = ANY(%s)", [_LIVE])
        return int(rows[0]["n"])

    @_reached
    async def needs_sync(self) -> list[ChangeRequest]:
        rows = await self._rows(
            "SELECT * FROM requests WHERE notified_state IS NULL OR notified_state != state ORDER BY updated_at, id"
        )
        return await _decoded(rows)

    @_reached
    async def recent(self, limit: int = 20) -> list[ChangeRequest]:
        rows = await self._rows("SELECT * FROM requests ORDER BY created_at DESC, id DESC LIMIT %s", [int(limit)])
        return await _decoded(rows)

    @_reached
    async def due_for_expiry(self, now: datetime | None = None) -> list[ChangeRequest]:
        rows = await self._rows(
            "SELECT * FROM requests WHERE state = %s AND expires_at IS NOT NULL AND expires_at <= %s "
            "ORDER BY expires_at",
            [RequestState.PENDING_APPROVAL.value, now or self._clock()],
        )
        return await _decoded(rows)

    async def _locked_write(
        self,
        request_id: str,
        updates: Callable[[dict[str, Any]], dict[str, Any] | None],
        audit: Callable[[dict[str, Any], ChangeRequest], _AuditLine] | None = None,
    ) -> ChangeRequest | bool | None:
        """Lock the row, ask `updates` what to set (None: nothing, the caller lost), write it and its audit line,
        in one transaction. False when the request does not exist."""
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT * FROM requests WHERE id = %s FOR UPDATE", [request_id])
            row = await cur.fetchone()
            if row is None:
                return False
            changes = updates(row)
            if changes is None:
                return None
            new = applied(row, changes)
            sets = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in changes
            )
            await cur.execute(
                sql.SQL("UPDATE requests SET {} WHERE id = %s").format(sets),
                [*(_encode(k, getattr(new, k)) for k in changes), request_id],
            )
            if audit is not None:
                line = audit(row, new)
                await _audit(cur, request_id, *line)
            return new

    @_reached
    async def transition(
        self,
        request_id: str,
        *,
        to: RequestState | str,
        expected: RequestState | str | Iterable[RequestState | str],
        actor: str,
        detail: str = "",
        **fields: Any,
    ) -> ChangeRequest | None:
        now = self._clock()
        target, guard, updates = plan_transition(to, expected, fields, now)
        guard_values = {s.value for s in guard}
        moved = await self._locked_write(
            request_id,
            lambda row: updates if row["state"] in guard_values else None,
            lambda row, new: _AuditLine(now, actor, target.value, RequestState(row["state"]), target, detail),
        )
        return moved if isinstance(moved, ChangeRequest) else None

    @_reached
    async def update(self, request_id: str, **fields: Any) -> ChangeRequest:
        check_fields(fields)
        updates = {**fields, "updated_at": fields.get("updated_at", self._clock())}
        new = await self._locked_write(request_id, lambda row: updates)
        if not isinstance(new, ChangeRequest):
            raise RequestNotFound(request_id)
        return new

    @_reached
    async def mark_sent(
        self, request_id: str, field: str, *, state: RequestState, at: datetime, **also: Any
    ) -> ChangeRequest | None:
        check_stamp(field, also)
        wanted = RequestState(state).value
        stamp = {**also, field: at, "updated_at": at}
        new = await self._locked_write(
            request_id, lambda row: stamp if row["state"] == wanted and row[field] is None else None
        )
        return new if isinstance(new, ChangeRequest) else None

    @_reached
    async def add_approval(self, request_id: str, user: str, *, actor: str) -> ChangeRequest | None:
        now = self._clock()

        def approve(row: dict[str, Any]) -> dict[str, Any] | None:
            approvals = list(row["approvals"] or [])
            if row["state"] != RequestState.PENDING_APPROVAL.value or user in approvals:
                return None
            return {"approvals": [*approvals, user], "updated_at": now}

        new = await self._locked_write(
            request_id,
            approve,
            lambda row, new: _AuditLine(
                now, actor, "approval", None, None, _approved_by(user, new)
            ),
        )
        return new if isinstance(new, ChangeRequest) else None

    @_reached
    async def record(self, request_id: str, *, actor: str, action: str, detail: str = "") -> None:
        pool = await self._ready()
        try:
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await _audit(cur, request_id, self._clock(), actor, action, None, None, detail)
        except psycopg.errors.ForeignKeyViolation:
            raise RequestNotFound(request_id) from None

    @_reached
    async def audit(self, request_id: str) -> list[AuditEvent]:
        rows = await self._rows("SELECT * FROM audit WHERE request_id = %s ORDER BY seq", [request_id])
        return [
            AuditEvent(
                request_id=r["request_id"],
                at=r["at"],
                actor=r["actor"],
                action=r["action"],
                from_state=r["from_state"],
                to_state=r["to_state"],
                detail=r["detail"],
            )
            for r in rows
        ]

    # --- fleets ------------------------------------------------------------------------------------------------------

    @_reached
    async def create_child(self, req: ChangeRequest, *, actor: str) -> tuple[ChangeRequest, bool]:
        if not req.fleet_key:
            raise ValueError("create_child needs a request with a fleet_key")
        for _attempt in range(3):
            found = await self.child(req.fleet_key)
            if found is not None:
                return found, False
            try:
                return await self.create(req, actor=actor), True
            except _FleetKeyTaken:
                continue  # another process stored it meanwhile: read that one
        raise StoreError(f"could not store the fleet's request {req.fleet_key}")

    @_reached
    async def child(self, fleet_key: str) -> ChangeRequest | None:
        rows = await self._rows("SELECT * FROM requests WHERE fleet_key = %s", [fleet_key])
        return request_from_row(rows[0]) if rows else None

    @_reached
    async def create_rollout(self, rollout: Rollout, audit: Sequence[RolloutAudit] = ()) -> None:
        now = self._clock()
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO rollouts (id, version, finished, created_at, updated_at, document) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                [rollout.id, rollout.version, rollout.finished, now, now, rollout.model_dump_json()],
            )
            await _rollout_audit(cur, rollout.id, now, audit)

    @_reached
    async def get_rollout(self, rollout_id: str) -> Rollout | None:
        rows = await self._rows("SELECT document::text AS d FROM rollouts WHERE id = %s", [rollout_id])
        return Rollout.model_validate_json(rows[0]["d"]) if rows else None

    @_reached
    async def save_rollout(
        self, rollout: Rollout, *, expected_version: int, audit: Sequence[RolloutAudit] = ()
    ) -> bool:
        now = self._clock()
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "UPDATE rollouts SET version = %s, finished = %s, updated_at = %s, document = %s::jsonb "
                "WHERE id = %s AND version = %s",
                [rollout.version, rollout.finished, now, rollout.model_dump_json(), rollout.id, expected_version],
            )
            if cur.rowcount != 1:
                return False
            await _rollout_audit(cur, rollout.id, now, audit)
            return True

    @_reached
    async def record_rollout(self, rollout_id: str, audit: Sequence[RolloutAudit]) -> None:
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await _rollout_audit(cur, rollout_id, self._clock(), audit)

    @_reached
    async def unfinished_rollouts(self) -> list[Rollout]:
        rows = await self._rows("SELECT document::text AS d FROM rollouts WHERE NOT finished ORDER BY created_at, id")
        return [Rollout.model_validate_json(r["d"]) for r in rows]

    @_reached
    async def rollout_audit(self, rollout_id: str) -> list[AuditEvent]:
        rows = await self._rows("SELECT * FROM rollout_audit WHERE rollout_id = %s ORDER BY seq", [rollout_id])
        return [
            AuditEvent(request_id=r["rollout_id"], at=r["at"], actor=r["actor"], action=r["action"], detail=r["detail"])
            for r in rows
        ]

    # --- history, export, retention ----------------------------------------------------------------------------------

    @_reached
    async def history(
        self,
        *,
        server: str | None = None,
        requester: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
    ) -> list[ChangeRequest]:
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if server:
            where.append("(server_id = %s OR lower(server_name) = lower(%s))")
            params += [server, server]
        if requester:
            where.append("requester = %s")
            params.append(requester)
        if since is not None:
            where.append("created_at >= %s")
            params.append(since)
        rows = await self._rows(
            f"SELECT * FROM requests WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT %s",  # noqa: S608 - fixed clauses, placeholders only
            [*params, int(limit)],
        )
        return await _decoded(rows)

    async def audit_since(self, since: datetime | None = None, *, page: int = EXPORT_PAGE) -> AsyncIterator[AuditEntry]:
        """Keyset paging on seq: each page is a short query on a pooled connection, so a slow reader holds no
        transaction open and no snapshot back from vacuum."""
        after = 0
        while True:
            rows = await self._audit_page(after, since, page)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1].seq

    @_reached
    async def _audit_page(self, after: int, since: datetime | None, page: int) -> list[AuditEntry]:
        rows = await self._rows(
            "SELECT * FROM audit WHERE seq > %s AND (%s::timestamptz IS NULL OR at >= %s) ORDER BY seq LIMIT %s",
            [after, since, since, int(page)],
        )
        return [retention.entry(r, r["at"]) for r in rows]

    async def prune(self, before: datetime, *, batch: int = PRUNE_BATCH) -> Pruned:
        requests = audit_rows = 0
        while True:  # one transaction per batch: short row locks, other replicas carry on in between
            n, rows = await self._prune_batch(before, batch)
            requests, audit_rows = requests + n, audit_rows + rows
            if n < batch:
                break
        expired = await self.purge_expired()
        return Pruned(before=before, requests=requests, audit_rows=audit_rows, expired=expired)

    @_reached
    async def _prune_batch(self, before: datetime, batch: int) -> tuple[int, int]:
        now = self._clock()
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(retention.CANDIDATES.format(mark="%s"), [before, int(batch)])
            found = await cur.fetchall()
            removed = 0
            for (server_id, newest), ids in retention.by_server(found).items():
                await cur.execute("DELETE FROM audit WHERE request_id = ANY(%s)", [ids])
                rows = cur.rowcount
                await cur.execute("DELETE FROM requests WHERE id = ANY(%s)", [ids])
                removed += rows
                await cur.execute(
                    "SELECT id FROM requests WHERE created_at = %s AND server_id = %s ORDER BY id DESC LIMIT 1",
                    [newest, server_id],
                )
                keeper = (await cur.fetchall())[0]["id"]
                detail = retention.pruned_detail(ids, rows, before)
                await _audit(cur, keeper, now, PRUNED_ACTOR, PRUNED_ACTION, None, None, detail)
            return len(found), removed

    # --- secrets -----------------------------------------------------------------------------------------------------

    @_reached
    async def put_secret(
        self,
        key: str,
        ciphertext: bytes,
        *,
        expires_at: datetime | None,
        set_by: str | None = None,
        set_via: str | None = None,
    ) -> None:
        if not isinstance(ciphertext, bytes | bytearray):
            raise TypeError("put_secret stores ciphertext bytes only (encrypt with SecretBox first)")
        await self._rows(_PUT_SECRET, [key, bytes(ciphertext), self._clock(), expires_at, set_by, set_via])

    @_reached
    async def secret_info(self, key: str) -> dict[str, Any] | None:
        rows = await self._rows(
            "SELECT created_at, expires_at, set_by, set_via FROM secrets WHERE key = %s "
            "AND (expires_at IS NULL OR expires_at > %s)",
            [key, self._clock()],
        )
        return dict(rows[0]) if rows else None

    @_reached
    async def get_secret(self, key: str) -> bytes | None:
        rows = await self._rows(
            "SELECT ciphertext FROM secrets WHERE key = %s AND (expires_at IS NULL OR expires_at > %s)",
            [key, self._clock()],
        )
        return bytes(rows[0]["ciphertext"]) if rows else None

    @_reached
    async def delete_secret(self, key: str) -> bool:
        return bool(await self._rows("DELETE FROM secrets WHERE key = %s RETURNING key", [key]))

    @_reached
    async def purge_expired(self, now: datetime | None = None) -> int:
        stamp = now or self._clock()
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            n = 0
            for query in (
                "DELETE FROM secrets WHERE expires_at IS NOT NULL AND expires_at <= %s",
                "DELETE FROM tokens WHERE expires_at <= %s",
                "DELETE FROM page_sessions WHERE expires_at <= %s",
            ):
                await cur.execute(query, [stamp])
                n += cur.rowcount
            return n

    @_reached
    async def reencrypt_secrets(self, rotate: Callable[[bytes], bytes | None]) -> tuple[int, int]:
        """Every secret in one transaction, its rows locked: a replica storing a password meanwhile waits."""
        done = same = 0
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT key, ciphertext FROM secrets FOR UPDATE")
            for row in await cur.fetchall():
                fresh = rotate(bytes(row["ciphertext"]))
                if fresh is None:
                    same += 1
                    continue
                await cur.execute("UPDATE secrets SET ciphertext = %s WHERE key = %s", [fresh, row["key"]])
                done += 1
        return done, same

    # --- leases ------------------------------------------------------------------------------------------------------

    @_reached
    async def acquire_lease(self, name: str, owner: str, ttl_s: float, now: float) -> bool:
        rows = await self._rows(
            """INSERT INTO leases (name, owner, expires_at, acquired_at, epoch) VALUES (%s, %s, %s, %s, 1)
               ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
               acquired_at = CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at
                                  ELSE excluded.acquired_at END,
               epoch = CASE WHEN leases.owner = excluded.owner THEN leases.epoch ELSE leases.epoch + 1 END
               WHERE leases.owner = excluded.owner OR leases.expires_at <= %s
               RETURNING owner""",
            [name, owner, now + ttl_s, now, now],
        )
        return bool(rows)

    @_reached
    async def release_lease(self, name: str, owner: str) -> None:
        await self._rows("UPDATE leases SET expires_at = 0 WHERE name = %s AND owner = %s", [name, owner])

    @_reached
    async def lease_owner(self, name: str, now: float) -> str | None:
        rows = await self._rows("SELECT owner FROM leases WHERE name = %s AND expires_at > %s", [name, now])
        return rows[0]["owner"] if rows else None

    @_reached
    async def lease_epoch(self, name: str) -> int:
        rows = await self._rows("SELECT epoch FROM leases WHERE name = %s", [name])
        return int(rows[0]["epoch"]) if rows else 0

    # --- one-time tokens ---------------------------------------------------------------------------------------------

    @_reached
    async def put_token(
        self, token_hash: str, *, purpose: str, subject: str, user_id: str, expires_at: datetime
    ) -> None:
        await self._rows(
            "INSERT INTO tokens (token_hash, purpose, subject, user_id, created_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [token_hash, purpose, subject, user_id, self._clock(), expires_at],
        )

    @_reached
    async def peek_token(
        self, token_hash: str, *, user_id: str, now: datetime | None = None
    ) -> dict[str, Any] | None:
        rows = await self._rows(
            "SELECT token_hash, purpose, subject, user_id, expires_at, used_at FROM tokens "
            "WHERE token_hash = %s AND user_id = %s AND used_at IS NULL AND expires_at > %s",
            [token_hash, user_id, now or self._clock()],
        )
        return dict(rows[0]) if rows else None

    @_reached
    async def consume_token(
        self, token_hash: str, *, user_id: str, now: datetime | None = None
    ) -> dict[str, Any] | None:
        stamp = now or self._clock()
        rows = await self._rows(
            "UPDATE tokens SET used_at = %s WHERE token_hash = %s AND user_id = %s AND used_at IS NULL "
            "AND expires_at > %s RETURNING token_hash, purpose, subject, user_id, expires_at, used_at",
            [stamp, token_hash, user_id, stamp],
        )
        return dict(rows[0]) if rows else None

    @_reached
    async def revoke_subject(self, purpose: str, subject_prefix: str) -> list[str]:
        rows = await self._rows(
            "DELETE FROM tokens WHERE purpose = %s AND left(subject, length(%s)) = %s RETURNING token_hash",
            [purpose, subject_prefix, subject_prefix],
        )
        return [r["token_hash"] for r in rows]

    # --- password page sessions --------------------------------------------------------------------------------------

    @_reached
    async def put_session(
        self, sid_hash: str, *, draft_id: str, os_type: str, user_id: str, expires_at: datetime
    ) -> None:
        await self._rows(
            "INSERT INTO page_sessions (sid_hash, draft_id, os_type, user_id, created_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [sid_hash, draft_id, os_type, user_id, self._clock(), expires_at],
        )

    @_reached
    async def get_session(self, sid_hash: str, now: datetime | None = None) -> dict[str, Any] | None:
        rows = await self._rows(
            "SELECT * FROM page_sessions WHERE sid_hash = %s AND expires_at > %s", [sid_hash, now or self._clock()]
        )
        return dict(rows[0]) if rows else None

    @_reached
    async def session_by_state(self, state_hash: str, now: datetime | None = None) -> dict[str, Any] | None:
        rows = await self._rows(
            "SELECT * FROM page_sessions WHERE state_hash = %s AND expires_at > %s", [state_hash, now or self._clock()]
        )
        return dict(rows[0]) if rows else None

    @_reached
    async def start_signin(self, sid_hash: str, *, state_hash: str, binding_hash: str, nonce: str) -> bool:
        rows = await self._rows(
            "UPDATE page_sessions SET state_hash = %s, binding_hash = %s, nonce = %s, signed_in_user = NULL "
            "WHERE sid_hash = %s RETURNING sid_hash",
            [state_hash, binding_hash, nonce, sid_hash],
        )
        return bool(rows)

    @_reached
    async def finish_signin(self, sid_hash: str, *, state_hash: str, user_id: str | None) -> bool:
        if user_id is None:
            gone = await self._rows("DELETE FROM page_sessions WHERE sid_hash = %s RETURNING sid_hash", [sid_hash])
            return bool(gone)
        rows = await self._rows(
            "UPDATE page_sessions SET state_hash = NULL, binding_hash = NULL, nonce = NULL, signed_in_user = %s "
            "WHERE sid_hash = %s AND state_hash = %s RETURNING sid_hash",
            [user_id, sid_hash, state_hash],
        )
        return bool(rows)

    @_reached
    async def revoke_sessions(self, draft_id: str) -> list[str]:
        rows = await self._rows("DELETE FROM page_sessions WHERE draft_id = %s RETURNING sid_hash", [draft_id])
        return [r["sid_hash"] for r in rows]

    @_reached
    async def put_secret_for_session(
        self,
        sid_hash: str,
        key: str,
        ciphertext: bytes,
        *,
        expires_at: datetime,
        set_by: str,
        set_via: str,
        now: datetime | None = None,
    ) -> bool:
        if not isinstance(ciphertext, bytes | bytearray):
            raise TypeError("put_secret_for_session stores ciphertext bytes only")
        pool = await self._ready()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "DELETE FROM page_sessions WHERE sid_hash = %s AND expires_at > %s", [sid_hash, now or self._clock()]
            )
            if cur.rowcount != 1:
                return False
            await cur.execute(_PUT_SECRET, [key, bytes(ciphertext), self._clock(), expires_at, set_by, set_via])
            return True


def _approved_by(user: str, request: ChangeRequest) -> str:
    return f"approved by {user} ({len(request.approvals)} of {request.approvals_required})"


class _AuditLine(NamedTuple):
    at: datetime
    actor: str
    action: str
    from_state: RequestState | None
    to_state: RequestState | None
    detail: str


_PUT_SECRET = (
    "INSERT INTO secrets (key, ciphertext, created_at, expires_at, set_by, set_via) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (key) DO UPDATE SET ciphertext = excluded.ciphertext, created_at = excluded.created_at, "
    "expires_at = excluded.expires_at, set_by = excluded.set_by, set_via = excluded.set_via"
)


async def _audit(
    cur: psycopg.AsyncCursor[Any],
    request_id: str,
    at: datetime,
    actor: str,
    action: str,
    from_state: RequestState | None,
    to_state: RequestState | None,
    detail: str,
) -> None:
    await cur.execute(
        "INSERT INTO audit (request_id, at, actor, action, from_state, to_state, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [
            request_id,
            at,
            actor,
            action,
            from_state.value if from_state else None,
            to_state.value if to_state else None,
            detail,
        ],
    )


async def _rollout_audit(
    cur: psycopg.AsyncCursor[Any], rollout_id: str, at: datetime, audit: Sequence[RolloutAudit]
) -> None:
    if audit:
        await cur.executemany(
            "INSERT INTO rollout_audit (rollout_id, at, actor, action, detail) VALUES (%s, %s, %s, %s, %s)",
            [(rollout_id, at, a.actor, a.action, a.detail) for a in audit],
        )


class _FleetKeyTaken(Exception):
    """Another process stored the fleet's child request first."""
