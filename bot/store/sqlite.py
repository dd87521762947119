"""The SQLite engine: one file, one connection, one worker thread that owns it.

Every call is a closure run on the store's own thread (`_Worker`), so a slow disk or a busy timeout (another
process holds the write lock) makes that one caller wait, never the event loop. The thread serialises the
connection: no lock, no sharing, `check_same_thread` keeps it honest.

Correctness lives in the database, not in the callers: every transition is one `BEGIN IMMEDIATE` transaction whose
UPDATE is guarded by the expected state and writes exactly one audit row, and a unique partial index allows one live
request per server. A caller that loses a race gets `None`, never an exception. Several processes may share the file.

Datetimes are stored as ISO-8601 UTC text of fixed width (so text order is time order), lists as JSON. No plaintext
password is ever written: only the ciphertext handed to `put_secret`, and `secure_delete` overwrites it on delete.
"""

from __future__ import annotations

import asyncio
import functools
import json
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from bot import metrics
from bot.domain.fleet import Rollout
from bot.domain.request import AuditEvent, ChangeRequest, RequestState, new_request_id, utcnow
from bot.store import retention, schema
from bot.store.codec import (
    KINDS,
    applied,
    check_fields,
    check_stamp,
    encode_text,
    iso,
    plan_transition,
    request_from_row,
)
from bot.store.health import Availability
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

__all__ = ["BUSY_TIMEOUT_S", "SQLiteStore", "migrate"]

BUSY_TIMEOUT_S = 10.0  # waited on the store's thread, never on the event loop
_LIVE_SQL = schema.LIVE_SQL
_LIVE_INDEX_SQL = f"CREATE UNIQUE INDEX {schema.LIVE_INDEX} ON requests(server_id) WHERE state IN ({_LIVE_SQL})"
_TYPES = {"json": "TEXT", "datetime": "TEXT", "bool": "INTEGER", "int": "INTEGER", "float": "FLOAT", "text": "TEXT"}

P = ParamSpec("P")
R = TypeVar("R")


def _offloaded(
    fn: Callable[Concatenate[SQLiteStore, P], R],
) -> Callable[Concatenate[SQLiteStore, P], Coroutine[Any, Any, R]]:
    """Run the method's body on the store's thread; the event loop only awaits its result."""

    @functools.wraps(fn)
    async def run(self: SQLiteStore, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(functools.partial(fn, self, *args, **kwargs))

    return run


class SQLiteStore:
    engine = "sqlite"

    def __init__(self, path: Path | str, *, clock: Callable[[], datetime] = utcnow) -> None:
        """Opens the file and its schema on the store's thread, and waits for it: a start-up cost, paid once."""
        self.path = Path(path)
        self._clock = clock
        self._closed = False
        self.availability = Availability()
        if not self.path.parent.exists():
            raise StoreError(f"Cannot open the database {self.path}: the folder {self.path.parent} does not exist.")
        self._worker = _Worker(f"ecsbot-store:{self.path.name}")
        try:
            self._worker.wait(self._open)
        except BaseException:
            self._worker.stop()
            raise

    def _open(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the database {self.path}: {exc}.") from None
        conn.row_factory = _dict_row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self.conn = conn
        self.version = _migrate(conn, str(self.path), schema.LATEST, self._clock())

    # --- plumbing ----------------------------------------------------------------------------------------------------

    async def _run(self, call: Callable[[], R]) -> R:
        if self._closed:
            raise StoreError(f"The database {self.path} is closed.")
        try:
            result: R = await self._worker.run(call)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full, I/O error
            raise self.availability.down(
                f"The database {self.path} could not do the work: {exc}. Nothing was changed; try again."
            ) from None
        self.availability.up()
        return result

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock up front, so read-then-write never deadlocks."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return _query(self.conn, sql, params)

    @property
    def problem(self) -> str | None:
        return self.availability.problem

    @_offloaded
    def ping(self) -> None:
        self._rows("SELECT 1")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._worker.run(self.conn.close)
        finally:
            self._worker.stop()

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @_offloaded
    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (old page images go with it)."""
        self._checkpoint()

    def _checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @_offloaded
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Raw SQL for diagnostics and tests (SQLite only; not part of the `Store` interface)."""
        return self._rows(sql, params)

    def _audit_row(
        self,
        db: sqlite3.Connection,
        request_id: str,
        *,
        at: datetime,
        actor: str,
        action: str,
        from_state: RequestState | None = None,
        to_state: RequestState | None = None,
        detail: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO audit (request_id, at, actor, action, from_state, to_state, detail) VALUES (?,?,?,?,?,?,?)",
            [
                request_id,
                iso(at),
                actor,
                action,
                from_state.value if from_state else None,
                to_state.value if to_state else None,
                detail,
            ],
        )

    def _select(self, db: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
        rows = _query(db, "SELECT * FROM requests WHERE id = ?", [request_id])
        return rows[0] if rows else None

    # --- requests ----------------------------------------------------------------------------------------------------

    @_offloaded
    def create(self, req: ChangeRequest, *, actor: str) -> ChangeRequest:
        """Store a new request; `ServerBusyError` if its server already has a live one."""
        return self._create(req, actor)

    def _create(self, req: ChangeRequest, actor: str) -> ChangeRequest:
        for _attempt in range(5):
            row = {name: encode_text(name, getattr(req, name)) for name in KINDS}
            with self._tx() as db:
                try:
                    db.execute(
                        f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608 - column names from the model
                        list(row.values()),
                    )
                except sqlite3.IntegrityError:
                    live = _query(
                        db,
                        f"SELECT id FROM requests WHERE server_id = ? AND state IN ({_LIVE_SQL})",  # noqa: S608 - fixed state names / placeholders only
                        [req.server_id],
                    )
                    if live and req.is_live:
                        raise ServerBusyError(live[0]["id"], req.server_id) from None
                    if self._select(db, req.id) is None:
                        raise
                    req = req.model_copy(update={"id": new_request_id()})  # id collision: draw again
                    continue
                self._audit_row(
                    db,
                    req.id,
                    at=req.created_at,
                    actor=actor,
                    action="created",
                    to_state=req.state,
                    detail=req.summary(),
                )
                metrics.request_stored()
                return req
        raise StoreError("could not draw a free request id")  # pragma: no cover - 31**6 ids

    @_offloaded
    def get(self, request_id: str) -> ChangeRequest | None:
        rows = self._rows("SELECT * FROM requests WHERE id = ?", [request_id])
        return request_from_row(rows[0]) if rows else None

    @_offloaded
    def live_for_server(self, server_id: str) -> ChangeRequest | None:
        rows = self._rows(f"SELECT * FROM requests WHERE server_id = ? AND state IN ({_LIVE_SQL})", [server_id])  # noqa: S608 - fixed state names / placeholders only
        return request_from_row(rows[0]) if rows else None

    @_offloaded
    def in_states(self, *states: RequestState | str) -> list[ChangeRequest]:
        return self._in_states(*states)

    def _in_states(self, *states: RequestState | str) -> list[ChangeRequest]:
        wanted = [RequestState(s).value for s in states]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._rows(f"SELECT * FROM requests WHERE state IN ({marks}) ORDER BY created_at, id", wanted)  # noqa: S608 - fixed state names / placeholders only
        return [request_from_row(r) for r in rows]

    @_offloaded
    def live(self) -> list[ChangeRequest]:
        return self._in_states(*schema.LIVE_VALUES)

    @_offloaded
    def count_live(self) -> int:
        """How many requests are live, without reading them (for /healthz, which is polled)."""
        rows = self._rows(f"SELECT COUNT(*) AS n FROM requests WHERE state IN ({_LIVE_SQL})")  # noqa: S608 - fixed state names
        return int(rows[0]["n"])

    @_offloaded
    def needs_sync(self) -> list[ChangeRequest]:
        """Requests whose latest state people have not been told about (the presenter's to-do list)."""
        rows = self._rows(
            "SELECT * FROM requests WHERE notified_state IS NULL OR notified_state != state ORDER BY updated_at, id"
        )
        return [request_from_row(r) for r in rows]

    @_offloaded
    def recent(self, limit: int = 20) -> list[ChangeRequest]:
        rows = self._rows("SELECT * FROM requests ORDER BY created_at DESC, id DESC LIMIT ?", [int(limit)])
        return [request_from_row(r) for r in rows]

    @_offloaded
    def latest_for_server(self, server_id: str) -> ChangeRequest | None:
        rows = self._rows(
            "SELECT * FROM requests WHERE server_id = ? ORDER BY created_at DESC, id DESC LIMIT 1", [server_id]
        )
        return request_from_row(rows[0]) if rows else None

    @_offloaded
    def due_for_expiry(self, now: datetime | None = None) -> list[ChangeRequest]:
        rows = self._rows(
            "SELECT * FROM requests WHERE state = ? AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at",
            [RequestState.PENDING_APPROVAL.value, iso(now or self._clock())],
        )
        return [request_from_row(r) for r in rows]

    def _write(
        self,
        db: sqlite3.Connection,
        row: dict[str, Any],
        updates: dict[str, Any],
        guard: frozenset[RequestState] | None,
    ) -> ChangeRequest | None:
        new = applied(row, updates)
        sets = ", ".join(f"[{k}] = ?" for k in updates)
        params = [encode_text(k, getattr(new, k)) for k in updates]
        sql = f"UPDATE requests SET {sets} WHERE id = ?"  # noqa: S608 - fixed state names / placeholders only
        params.append(new.id)
        if guard is not None:
            sql += f" AND state IN ({','.join('?' * len(guard))})"
            params += [s.value for s in sorted(guard)]
        return new if db.execute(sql, params).rowcount == 1 else None

    @_offloaded
    def transition(
        self,
        request_id: str,
        *,
        to: RequestState | str,
        expected: RequestState | str | Iterable[RequestState | str],
        actor: str,
        detail: str = "",
        **fields: Any,
    ) -> ChangeRequest | None:
        """Move the request to `to` if it is in one of `expected`; None when it is not (a lost race).

        `fields` are set in the same UPDATE. Entering a terminal state stamps `finished_at` unless given.
        `InvalidTransition` only for a move the state machine never allows, which is a bug in the caller.
        """
        now = self._clock()
        target, guard, updates = plan_transition(to, expected, fields, now)
        with self._tx() as db:
            row = self._select(db, request_id)
            if row is None or row["state"] not in guard:
                return None
            new = self._write(db, row, updates, guard)
            if new is None:
                return None
            self._audit_row(
                db,
                request_id,
                at=now,
                actor=actor,
                action=target.value,
                from_state=RequestState(row["state"]),
                to_state=target,
                detail=detail,
            )
            metrics.request_moved(target, self_service=actor == new.requester)
            return new

    @_offloaded
    def update(self, request_id: str, **fields: Any) -> ChangeRequest:
        """Set non-state fields (message ts, poll schedule, job progress). Not audited: nothing a person decided."""
        check_fields(fields)
        updates = {**fields, "updated_at": fields.get("updated_at", self._clock())}
        with self._tx() as db:
            row = self._select(db, request_id)
            if row is None:
                raise RequestNotFound(request_id)
            new = self._write(db, row, updates, None)
            assert new is not None
            return new

    @_offloaded
    def mark_sent(
        self, request_id: str, field: str, *, state: RequestState, at: datetime, **also: Any
    ) -> ChangeRequest | None:
        check_stamp(field, also)
        wanted = RequestState(state)
        with self._tx() as db:
            row = self._select(db, request_id)
            if row is None or row["state"] != wanted.value or row[field] is not None:
                return None
            return self._write(db, row, {**also, field: at, "updated_at": at}, frozenset({wanted}))

    @_offloaded
    def add_approval(self, request_id: str, user: str, *, actor: str) -> ChangeRequest | None:
        """Append `user` to the approvals while pending; None if not pending or `user` already approved."""
        now = self._clock()
        with self._tx() as db:
            row = self._select(db, request_id)
            if row is None or row["state"] != RequestState.PENDING_APPROVAL.value:
                return None
            approvals = json.loads(row["approvals"] or "[]")
            if user in approvals:
                return None
            approvals.append(user)
            new = self._write(
                db, row, {"approvals": approvals, "updated_at": now}, frozenset({RequestState.PENDING_APPROVAL})
            )
            if new is None:
                return None
            self._audit_row(
                db,
                request_id,
                at=now,
                actor=actor,
                action="approval",
                detail=f"approved by {user} ({len(approvals)} of {new.approvals_required})",
            )
            return new

    @_offloaded
    def record(self, request_id: str, *, actor: str, action: str, detail: str = "") -> None:
        """An audit event that is not a transition, e.g. a refused click."""
        try:
            with self._tx() as db:
                self._audit_row(db, request_id, at=self._clock(), actor=actor, action=action, detail=detail)
        except sqlite3.IntegrityError:
            raise RequestNotFound(request_id) from None

    @_offloaded
    def audit(self, request_id: str) -> list[AuditEvent]:
        rows = self._rows("SELECT * FROM audit WHERE request_id = ? ORDER BY seq", [request_id])
        return [
            AuditEvent(
                request_id=r["request_id"],
                at=datetime.fromisoformat(r["at"]),
                actor=r["actor"],
                action=r["action"],
                from_state=r["from_state"],
                to_state=r["to_state"],
                detail=r["detail"],
            )
            for r in rows
        ]

    # --- fleets ------------------------------------------------------------------------------------------------------

    @_offloaded
    def create_child(self, req: ChangeRequest, *, actor: str) -> tuple[ChangeRequest, bool]:
        if not req.fleet_key:
            raise ValueError("create_child needs a request with a fleet_key")
        rows = self._rows("SELECT * FROM requests WHERE fleet_key = ?", [req.fleet_key])
        if rows:  # the store has one thread: nothing of this process slips in before the insert below
            return request_from_row(rows[0]), False
        return self._create(req, actor), True

    @_offloaded
    def child(self, fleet_key: str) -> ChangeRequest | None:
        rows = self._rows("SELECT * FROM requests WHERE fleet_key = ?", [fleet_key])
        return request_from_row(rows[0]) if rows else None

    @_offloaded
    def create_rollout(self, rollout: Rollout, audit: Sequence[RolloutAudit] = ()) -> None:
        now = iso(self._clock())
        with self._tx() as db:
            db.execute(
                "INSERT INTO rollouts (id, version, finished, created_at, updated_at, document) VALUES (?,?,?,?,?,?)",
                [rollout.id, rollout.version, int(rollout.finished), now, now, rollout.model_dump_json()],
            )
            self._rollout_audit(db, rollout.id, audit)

    @_offloaded
    def get_rollout(self, rollout_id: str) -> Rollout | None:
        rows = self._rows("SELECT document FROM rollouts WHERE id = ?", [rollout_id])
        return Rollout.model_validate_json(rows[0]["document"]) if rows else None

    @_offloaded
    def save_rollout(self, rollout: Rollout, *, expected_version: int, audit: Sequence[RolloutAudit] = ()) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE rollouts SET version = ?, finished = ?, updated_at = ?, document = ? "
                "WHERE id = ? AND version = ?",
                [
                    rollout.version,
                    int(rollout.finished),
                    iso(self._clock()),
                    rollout.model_dump_json(),
                    rollout.id,
                    expected_version,
                ],
            )
            if cursor.rowcount != 1:
                return False
            self._rollout_audit(db, rollout.id, audit)
            return True

    @_offloaded
    def record_rollout(self, rollout_id: str, audit: Sequence[RolloutAudit]) -> None:
        with self._tx() as db:
            self._rollout_audit(db, rollout_id, audit)

    def _rollout_audit(self, db: sqlite3.Connection, rollout_id: str, audit: Sequence[RolloutAudit]) -> None:
        at = iso(self._clock())
        db.executemany(
            "INSERT INTO rollout_audit (rollout_id, at, actor, action, detail) VALUES (?,?,?,?,?)",
            [(rollout_id, at, a.actor, a.action, a.detail) for a in audit],
        )

    @_offloaded
    def unfinished_rollouts(self) -> list[Rollout]:
        rows = self._rows("SELECT document FROM rollouts WHERE finished = 0 ORDER BY created_at, id")
        return [Rollout.model_validate_json(r["document"]) for r in rows]

    @_offloaded
    def rollout_audit(self, rollout_id: str) -> list[AuditEvent]:
        rows = self._rows("SELECT * FROM rollout_audit WHERE rollout_id = ? ORDER BY seq", [rollout_id])
        return [
            AuditEvent(
                request_id=r["rollout_id"],
                at=datetime.fromisoformat(r["at"]),
                actor=r["actor"],
                action=r["action"],
                detail=r["detail"],
            )
            for r in rows
        ]

    # --- history, export, retention ----------------------------------------------------------------------------------

    @_offloaded
    def history(
        self,
        *,
        server: str | None = None,
        requester: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
    ) -> list[ChangeRequest]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if server:
            where.append("(server_id = ? OR lower(server_name) = lower(?))")
            params += [server, server]
        if requester:
            where.append("requester = ?")
            params.append(requester)
        if since is not None:
            where.append("created_at >= ?")
            params.append(iso(since))
        rows = self._rows(
            f"SELECT * FROM requests WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",  # noqa: S608 - fixed clauses, placeholders only
            [*params, int(limit)],
        )
        return [request_from_row(r) for r in rows]

    async def audit_since(self, since: datetime | None = None, *, page: int = EXPORT_PAGE) -> AsyncIterator[AuditEntry]:
        after = 0
        while True:
            rows = await self._run(functools.partial(self._audit_page, after, since, page))
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1].seq

    def _audit_page(self, after: int, since: datetime | None, page: int) -> list[AuditEntry]:
        rows = self._rows(
            "SELECT * FROM audit WHERE seq > ? AND at >= ? ORDER BY seq LIMIT ?",
            [after, iso(since) if since else "", int(page)],
        )
        return [retention.entry(r, datetime.fromisoformat(r["at"])) for r in rows]

    async def prune(self, before: datetime, *, batch: int = PRUNE_BATCH) -> Pruned:
        requests = audit_rows = 0
        while True:  # one transaction per batch: other processes get the write lock in between
            n, rows = await self._run(functools.partial(self._prune_batch, before, batch))
            requests, audit_rows = requests + n, audit_rows + rows
            if n < batch:
                break
        expired = await self.purge_expired()
        if requests:
            await self._run(self._checkpoint)
        return Pruned(before=before, requests=requests, audit_rows=audit_rows, expired=expired)

    def _prune_batch(self, before: datetime, batch: int) -> tuple[int, int]:
        now = self._clock()
        with self._tx() as db:
            found = _query(db, retention.CANDIDATES.format(mark="?"), [iso(before), int(batch)])
            removed = 0
            for (server_id, newest), ids in retention.by_server(found).items():
                marks = ",".join("?" * len(ids))
                rows = db.execute(f"DELETE FROM audit WHERE request_id IN ({marks})", ids).rowcount  # noqa: S608 - placeholders only
                db.execute(f"DELETE FROM requests WHERE id IN ({marks})", ids)  # noqa: S608 - placeholders only
                removed += rows
                keeper = _query(
                    db,
                    "SELECT id FROM requests WHERE created_at = ? AND server_id = ? ORDER BY id DESC LIMIT 1",
                    [newest, server_id],
                )[0]["id"]
                self._audit_row(
                    db,
                    keeper,
                    at=now,
                    actor=PRUNED_ACTOR,
                    action=PRUNED_ACTION,
                    detail=retention.pruned_detail(ids, rows, before),
                )
            return len(found), removed

    # --- secrets -----------------------------------------------------------------------------------------------------

    @_offloaded
    def put_secret(
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
        with self._tx() as db:
            self._put_secret(db, key, ciphertext, expires_at, set_by, set_via)

    def _put_secret(
        self,
        db: sqlite3.Connection,
        key: str,
        ciphertext: bytes,
        expires_at: datetime | None,
        set_by: str | None,
        set_via: str | None,
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO secrets (key, ciphertext, created_at, expires_at, set_by, set_via) "
            "VALUES (?,?,?,?,?,?)",
            [key, bytes(ciphertext), iso(self._clock()), iso(expires_at) if expires_at else None, set_by, set_via],
        )

    @_offloaded
    def secret_info(self, key: str) -> dict[str, Any] | None:
        """When and by whom a live secret was stored, and when it expires; never the ciphertext."""
        rows = self._rows(
            "SELECT created_at, expires_at, set_by, set_via FROM secrets WHERE key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            [key, iso(self._clock())],
        )
        if not rows:
            return None
        row = rows[0]
        return {
            "created_at": datetime.fromisoformat(row["created_at"]),
            "expires_at": datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None,
            "set_by": row["set_by"],
            "set_via": row["set_via"],
        }

    @_offloaded
    def get_secret(self, key: str) -> bytes | None:
        """The ciphertext, or None when missing or expired."""
        rows = self._rows(
            "SELECT ciphertext FROM secrets WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            [key, iso(self._clock())],
        )
        return bytes(rows[0]["ciphertext"]) if rows else None

    @_offloaded
    def delete_secret(self, key: str) -> bool:
        """Delete and overwrite (secure_delete), then checkpoint so the WAL's old copy goes too."""
        with self._tx() as db:
            deleted = db.execute("DELETE FROM secrets WHERE key = ?", [key]).rowcount > 0
        if deleted:
            self._checkpoint()
        return deleted

    @_offloaded
    def purge_expired(self, now: datetime | None = None) -> int:
        """Housekeeping: drop expired secrets and tokens. Returns how many rows went."""
        stamp = iso(now or self._clock())
        with self._tx() as db:
            n = db.execute("DELETE FROM secrets WHERE expires_at IS NOT NULL AND expires_at <= ?", [stamp]).rowcount
            n += db.execute("DELETE FROM tokens WHERE expires_at <= ?", [stamp]).rowcount
            n += db.execute("DELETE FROM page_sessions WHERE expires_at <= ?", [stamp]).rowcount
        if n:
            self._checkpoint()
        return n

    @_offloaded
    def reencrypt_secrets(self, rotate: Callable[[bytes], bytes | None]) -> tuple[int, int]:
        """Every secret in one transaction (a handful: drafts and pending requests), then a checkpoint so the WAL
        keeps no copy under the old key."""
        done = same = 0
        with self._tx() as db:
            for row in _query(db, "SELECT key, ciphertext FROM secrets"):
                fresh = rotate(bytes(row["ciphertext"]))
                if fresh is None:
                    same += 1
                    continue
                db.execute("UPDATE secrets SET ciphertext = ? WHERE key = ?", [fresh, row["key"]])
                done += 1
        if done:
            self._checkpoint()
        return done, same

    # --- leases ------------------------------------------------------------------------------------------------------

    @_offloaded
    def acquire_lease(self, name: str, owner: str, ttl_s: float, now: float) -> bool:
        """Take or renew the lease; True if it was free, expired, or already `owner`'s."""
        with self._tx() as db:
            rows = _query(db, "SELECT owner, expires_at FROM leases WHERE name = ?", [name])
            if rows and rows[0]["owner"] != owner and rows[0]["expires_at"] > now:
                return False
            db.execute(
                """INSERT INTO leases (name, owner, expires_at, acquired_at, epoch) VALUES (?,?,?,?,1)
                   ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
                   acquired_at = CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at
                                      ELSE excluded.acquired_at END,
                   epoch = CASE WHEN leases.owner = excluded.owner THEN leases.epoch ELSE leases.epoch + 1 END""",
                [name, owner, now + ttl_s, now],
            )
            return True

    @_offloaded
    def release_lease(self, name: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE leases SET expires_at = 0 WHERE name = ? AND owner = ?", [name, owner])

    @_offloaded
    def lease_owner(self, name: str, now: float) -> str | None:
        rows = self._rows("SELECT owner FROM leases WHERE name = ? AND expires_at > ?", [name, now])
        return rows[0]["owner"] if rows else None

    @_offloaded
    def lease_epoch(self, name: str) -> int:
        """How many owners the lease has had (0: never taken)."""
        rows = self._rows("SELECT epoch FROM leases WHERE name = ?", [name])
        return int(rows[0]["epoch"]) if rows else 0

    # --- one-time tokens ---------------------------------------------------------------------------------------------

    @_offloaded
    def put_token(self, token_hash: str, *, purpose: str, subject: str, user_id: str, expires_at: datetime) -> None:
        """Store a token by its hash only; the raw token lives in the link and nowhere else."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO tokens (token_hash, purpose, subject, user_id, created_at, expires_at) "
                "VALUES (?,?,?,?,?,?)",
                [token_hash, purpose, subject, user_id, iso(self._clock()), iso(expires_at)],
            )

    @staticmethod
    def _token_dict(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "token_hash": row["token_hash"],
            "purpose": row["purpose"],
            "subject": row["subject"],
            "user_id": row["user_id"],
            "expires_at": datetime.fromisoformat(row["expires_at"]),
            "used_at": datetime.fromisoformat(row["used_at"]) if row["used_at"] else None,
        }

    @_offloaded
    def peek_token(self, token_hash: str, *, user_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The token if it could be consumed now by `user_id`, without using it up."""
        rows = self._rows(
            "SELECT * FROM tokens WHERE token_hash = ? AND user_id = ? AND used_at IS NULL AND expires_at > ?",
            [token_hash, user_id, iso(now or self._clock())],
        )
        return self._token_dict(rows[0]) if rows else None

    @_offloaded
    def consume_token(self, token_hash: str, *, user_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """Use the token up, atomically; None if unknown, used, expired or another user's."""
        stamp = iso(now or self._clock())
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tokens SET used_at = ? WHERE token_hash = ? AND user_id = ? AND used_at IS NULL "
                "AND expires_at > ?",
                [stamp, token_hash, user_id, stamp],
            )
            if cursor.rowcount != 1:
                return None
            rows = _query(db, "SELECT * FROM tokens WHERE token_hash = ?", [token_hash])
            return self._token_dict(rows[0])

    @_offloaded
    def revoke_subject(self, purpose: str, subject_prefix: str) -> list[str]:
        """Delete every token of `purpose` whose subject starts with `subject_prefix`; their hashes, for tombstones."""
        with self._tx() as db:
            rows = _query(
                db,
                "SELECT token_hash FROM tokens WHERE purpose = ? AND substr(subject, 1, length(?)) = ?",
                [purpose, subject_prefix, subject_prefix],
            )
            db.execute(
                "DELETE FROM tokens WHERE purpose = ? AND substr(subject, 1, length(?)) = ?",
                [purpose, subject_prefix, subject_prefix],
            )
        return [r["token_hash"] for r in rows]

    # --- password page sessions ---------------------------------------------------------------------------------------
    # A link's token is exchanged for one of these on first open: the cookie holds the raw id, the row only its hash.

    @_offloaded
    def put_session(self, sid_hash: str, *, draft_id: str, os_type: str, user_id: str, expires_at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO page_sessions (sid_hash, draft_id, os_type, user_id, created_at, expires_at) "
                "VALUES (?,?,?,?,?,?)",
                [sid_hash, draft_id, os_type, user_id, iso(self._clock()), iso(expires_at)],
            )

    @staticmethod
    def _session_dict(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "expires_at": datetime.fromisoformat(row["expires_at"])}

    @_offloaded
    def get_session(self, sid_hash: str, now: datetime | None = None) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM page_sessions WHERE sid_hash = ? AND expires_at > ?", [sid_hash, iso(now or self._clock())]
        )
        return self._session_dict(rows[0]) if rows else None

    @_offloaded
    def session_by_state(self, state_hash: str, now: datetime | None = None) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM page_sessions WHERE state_hash = ? AND expires_at > ?",
            [state_hash, iso(now or self._clock())],
        )
        return self._session_dict(rows[0]) if rows else None

    @_offloaded
    def start_signin(self, sid_hash: str, *, state_hash: str, binding_hash: str, nonce: str) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE page_sessions SET state_hash = ?, binding_hash = ?, nonce = ?, signed_in_user = NULL "
                "WHERE sid_hash = ?",
                [state_hash, binding_hash, nonce, sid_hash],
            )
            return cursor.rowcount == 1

    @_offloaded
    def finish_signin(self, sid_hash: str, *, state_hash: str, user_id: str | None) -> bool:
        """Use the state up (once) and record who signed in; None as user ends the session instead."""
        with self._tx() as db:
            if user_id is None:
                return db.execute("DELETE FROM page_sessions WHERE sid_hash = ?", [sid_hash]).rowcount == 1
            cursor = db.execute(
                "UPDATE page_sessions SET state_hash = NULL, binding_hash = NULL, nonce = NULL, signed_in_user = ? "
                "WHERE sid_hash = ? AND state_hash = ?",
                [user_id, sid_hash, state_hash],
            )
            return cursor.rowcount == 1

    @_offloaded
    def revoke_sessions(self, draft_id: str) -> list[str]:
        with self._tx() as db:
            rows = _query(db, "SELECT sid_hash FROM page_sessions WHERE draft_id = ?", [draft_id])
            db.execute("DELETE FROM page_sessions WHERE draft_id = ?", [draft_id])
        return [r["sid_hash"] for r in rows]

    @_offloaded
    def put_secret_for_session(
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
        """Store a draft's password only while the page session that sent it is alive, and end that session:
        one transaction, so a password can never land on a draft that was submitted or closed meanwhile."""
        if not isinstance(ciphertext, bytes | bytearray):
            raise TypeError("put_secret_for_session stores ciphertext bytes only")
        with self._tx() as db:
            gone = db.execute(
                "DELETE FROM page_sessions WHERE sid_hash = ? AND expires_at > ?",
                [sid_hash, iso(now or self._clock())],
            )
            if gone.rowcount != 1:
                return False
            self._put_secret(db, key, ciphertext, expires_at, set_by, set_via)
            return True


class _Worker:
    """The store's one thread: it owns the connection and runs calls in order. A caller's result comes back through
    its own event loop (call_soon_threadsafe), so the loop never blocks; the hop is a queue put and a loop wake-up."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[BaseException | None, Any], None]] | None]
        self._jobs = queue.SimpleQueue()
        # A daemon: a process that exits without closing its store is not held up (each transaction is atomic).
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, done = job
            try:
                result = call()
            except BaseException as exc:  # handed to the caller, raised there
                done(exc, None)
            else:
                done(None, result)

    def run(self, call: Callable[[], R]) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()

        def done(exc: BaseException | None, result: Any) -> None:
            loop.call_soon_threadsafe(_settle, future, exc, result)

        self._jobs.put((call, done))
        return future

    def wait(self, call: Callable[[], R]) -> R:
        """Run `call` and block until it ends: only before any loop awaits the store (opening it)."""
        finished = threading.Event()
        outcome: list[Any] = []

        def done(exc: BaseException | None, result: Any) -> None:
            outcome.extend((exc, result))
            finished.set()

        self._jobs.put((call, done))
        finished.wait()
        if outcome[0] is not None:
            raise outcome[0]
        result: R = outcome[1]
        return result

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future[Any], exc: BaseException | None, result: Any) -> None:
    if future.cancelled():  # the caller gave up; the work itself ran (and, for a write, committed)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def _query(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = conn.execute(sql, list(params)).fetchall()
    return rows


# --- schema versions (bot/store/schema.py says what each brings) ------------------------------------------------------


def migrate(path: Path | str, *, upto: int = schema.LATEST) -> int:
    """Bring the file's schema to version `upto` (opening a store brings it to the latest); the version now."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = _dict_row
    try:
        return _migrate(conn, str(path), upto, utcnow())
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection, where: str, upto: int, now: datetime) -> int:
    """Apply the missing versions up to `upto` in one transaction: replicas sharing the file wait for it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = int(_query(conn, "SELECT coalesce(max(version), 0) AS v FROM schema_migrations")[0]["v"])
        if current > schema.LATEST:
            raise StoreError(schema.too_new(current, where))
        for version in range(current + 1, upto + 1):
            MIGRATIONS[version](conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                [version, schema.VERSIONS[version], iso(now)],
            )
        if upto == schema.LATEST:
            missing = schema.missing_columns(r["name"] for r in _query(conn, "PRAGMA table_info(requests)"))
            if missing:
                raise StoreError(f"requests lacks columns for {', '.join(missing)}: a migration is missing.")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return max(current, upto)


def _v1(conn: sqlite3.Connection) -> None:
    """The first release's tables. A file made by an earlier, unversioned build has them already, perhaps without
    the columns added since: those are added."""
    columns = ", ".join(
        f"{name} {_TYPES[kind]}" + (" PRIMARY KEY" if name == "id" else " NOT NULL" if name in schema.REQUIRED else "")
        for name, kind in schema.REQUEST_COLUMNS_V1
    )
    conn.execute(f"CREATE TABLE IF NOT EXISTS requests ({columns})")
    _add_missing_columns(conn, schema.REQUEST_COLUMNS_V1)
    conn.execute("CREATE INDEX IF NOT EXISTS requests_state ON requests(state)")
    conn.execute("CREATE INDEX IF NOT EXISTS requests_created ON requests(created_at)")
    _live_index(conn)
    conn.execute(
        """CREATE TABLE IF NOT EXISTS audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            from_state TEXT, to_state TEXT, detail TEXT NOT NULL DEFAULT '')"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS audit_request ON audit(request_id, seq)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS secrets (
            key TEXT PRIMARY KEY, ciphertext BLOB NOT NULL, created_at TEXT NOT NULL, expires_at TEXT)"""
    )
    if "set_by" not in {r["name"] for r in _query(conn, "PRAGMA table_info(secrets)")}:
        conn.execute("ALTER TABLE secrets ADD COLUMN set_by TEXT")
        conn.execute("ALTER TABLE secrets ADD COLUMN set_via TEXT")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS page_sessions (
            sid_hash TEXT PRIMARY KEY, draft_id TEXT NOT NULL, os_type TEXT NOT NULL, user_id TEXT NOT NULL,
            created_at TEXT NOT NULL, expires_at TEXT NOT NULL, state_hash TEXT, binding_hash TEXT,
            nonce TEXT, signed_in_user TEXT)"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS page_sessions_draft ON page_sessions(draft_id)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS leases (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL, acquired_at REAL)"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS tokens (
            token_hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, subject TEXT NOT NULL,
            user_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT)"""
    )


_PY_TYPES: dict[str, type] = {"json": str, "datetime": str, "bool": int, "int": int, "float": float, "text": str}


def _add_missing_columns(conn: sqlite3.Connection, columns: Iterable[tuple[str, str]]) -> None:
    """Add the columns the requests table lacks (a file from an earlier, or unversioned, build may have some), with
    sqlite-utils: it reads the table's columns and writes the ALTER TABLE, inside the migration's transaction."""
    factory, conn.row_factory = conn.row_factory, None  # sqlite-utils reads plain tuples; ours are dicts
    try:
        table = Database(conn, recursive_triggers=False, execute_plugins=False).table("requests")
        have = table.columns_dict
        for name, kind in columns:
            if name not in have:
                table.add_column(name, _PY_TYPES[kind])
    finally:
        conn.row_factory = factory


def _live_index(conn: sqlite3.Connection) -> None:
    """One live request per server, over today's live states (rebuilt when a version adds one)."""
    current = _query(conn, "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", [schema.LIVE_INDEX])
    if current and current[0]["sql"] != _LIVE_INDEX_SQL:
        conn.execute(f"DROP INDEX {schema.LIVE_INDEX}")
        current = []
    if not current:
        conn.execute(_LIVE_INDEX_SQL)


def _v2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")


def _v3(conn: sqlite3.Connection) -> None:
    _add_missing_columns(conn, schema.REQUEST_COLUMNS_V3)
    _live_index(conn)


def _v4(conn: sqlite3.Connection) -> None:
    _add_missing_columns(conn, schema.REQUEST_COLUMNS_V4)
    conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {schema.FLEET_KEY_INDEX} ON requests(fleet_key)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS rollouts (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, finished INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL, document TEXT NOT NULL)"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS rollouts_unfinished ON rollouts(finished, created_at)")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS rollout_audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
            at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS rollout_audit_rollout ON rollout_audit(rollout_id, seq)")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4}
assert set(MIGRATIONS) == set(schema.VERSIONS)
