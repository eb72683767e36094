"""The durable local store: outbox, dead letters and detector state, in one SQLite file.

Events are written in the same transaction as the detector state that produced them, so a
``kill -9`` at any moment leaves either both or neither: a session is neither lost nor sent
twice under two ids. WAL with ``synchronous=FULL`` survives process crashes and, on storage that
honours fsync, power loss (``shared/notes/reliability.md`` section 6).

Small groups are committed on the event loop's thread and large ones on the database thread
(:class:`iot_bridge.outbox.worker.DbWorker`), so every method holds the store's lock: one
connection, one transaction at a time. Nothing here is async and nothing here knows about MQTT
or HTTP.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson

from iot_bridge.errors import StoreError
from iot_bridge.events import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_uid TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_measurements ON outbox (event_type, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    event_uid TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body BLOB NOT NULL,
    status INTEGER,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS detector_state (
    device_id TEXT PRIMARY KEY,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

MIN_FREE_BYTES = 1 << 20
MEASUREMENT_CAP = 1000
"""The original's bound: at most this many queued ``power_measurement`` events, oldest dropped.
``run_start`` / ``run_stop`` are never dropped."""


P = ParamSpec("P")
R = TypeVar("R")


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) as 0700: readings, events and the Odoo config are the
    workshop's business. An existing directory is left as the operator made it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_file(path: Path) -> None:
    """Make sure ``path`` exists as a 0600 file (SQLite gives its -wal and -shm files the mode
    of the database file); files created world-readable by an older version are narrowed."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = name.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(name, mode & 0o700)


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """Run a Store method under the store's lock (the connection serves two threads)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    event_uid: str
    device_id: str
    event_type: str
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event_uid: str
    device_id: str
    event_type: str
    status: int | None
    error: str
    failed_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    depth: int
    oldest_created_at: float | None
    dead_letters: int
    dropped_measurements: int
    last_dead_letter_at: float | None = None
    dead_letters_by_status: tuple[tuple[int, int], ...] = ()  # (HTTP status or 0, count)


class Store:
    def __init__(self, path: Path, measurement_cap: int = MEASUREMENT_CAP) -> None:
        self.path = path
        self.measurement_cap = measurement_cap
        self._lock = threading.RLock()
        try:
            private_file(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            (check,) = self._db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise StoreError(f"{path} is corrupt ({check}); refusing to start on it")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot open the store {path}: {exc.strerror or exc}") from None

    @_locked
    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any SQLite failure becomes a StoreError."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the store {self.path}: {exc}") from None

    @_locked
    def pragmas(self) -> tuple[str, int]:
        """(journal_mode, synchronous) as SQLite reports them; pinned by a test."""
        (mode,) = self._db.execute("PRAGMA journal_mode").fetchone()
        (sync,) = self._db.execute("PRAGMA synchronous").fetchone()
        return str(mode), int(sync)

    # -- the ingest transaction ---------------------------------------------------------------

    @_locked
    def commit(
        self,
        events: Sequence[Event],
        states: Mapping[str, Mapping[str, Any] | None],
        now: float | None = None,
    ) -> int:
        """Events plus the detector states that produced them, atomically. Returns rows added."""
        created = time.time() if now is None else now
        rows = [(e.event_uid, e.device_id, e.event_type, e.to_json(), created) for e in events]
        upserts = [(k, orjson.dumps(v)) for k, v in states.items() if v is not None]
        deletes = [(k,) for k, v in states.items() if v is None]
        with self._transaction() as db:
            before = db.total_changes
            if rows:
                db.executemany(
                    "INSERT OR IGNORE INTO outbox"
                    " (event_uid, device_id, event_type, body, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            added = db.total_changes - before
            if upserts:
                db.executemany(
                    "INSERT INTO detector_state (device_id, state) VALUES (?, ?)"
                    " ON CONFLICT (device_id) DO UPDATE SET state = excluded.state",
                    upserts,
                )
            if deletes:
                db.executemany("DELETE FROM detector_state WHERE device_id = ?", deletes)
            if any(e.event_type == "power_measurement" for e in events):
                self._trim_measurements()
        return added

    def _trim_measurements(self) -> None:
        (count,) = self._db.execute(
            "SELECT count(*) FROM outbox WHERE event_type = 'power_measurement'"
        ).fetchone()
        excess = count - self.measurement_cap
        if excess > 0:
            self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
                " WHERE event_type = 'power_measurement' ORDER BY seq LIMIT ?)",
                (excess,),
            )
            self._bump("dropped_measurements", excess)

    def _bump(self, key: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
            " DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
            (key, by),
        )

    @_locked
    def load_states(self) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT device_id, state FROM detector_state").fetchall()
        return {device_id: orjson.loads(state) for device_id, state in rows}

    @_locked
    def probe_writable(self) -> None:
        """Raise :class:`StoreError` unless the disk has room and a small write commits.

        The free-space check matters: a write can succeed inside WAL pages SQLite already owns
        while the file system is still full."""
        stat = os.statvfs(self.path.parent)
        free = stat.f_bavail * stat.f_frsize
        if free < MIN_FREE_BYTES:
            raise StoreError(f"only {free} bytes free on the store's file system")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('probe', ?) ON CONFLICT (key)"
                " DO UPDATE SET value = excluded.value",
                (repr(time.time()) + "x" * 4096,),
            )

    # -- delivery -----------------------------------------------------------------------------

    @_locked
    def pending(self, limit: int) -> list[Pending]:
        rows = self._db.execute(
            "SELECT seq, event_uid, device_id, event_type, body, attempts FROM outbox"
            " ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [Pending(*row) for row in rows]

    @_locked
    def delivered(self, seqs: Iterable[int]) -> None:
        self._write_many("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    @_locked
    def failed(self, seqs: Iterable[int], error: str) -> None:
        self._write_many(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
            [(error, s) for s in seqs],
        )

    @_locked
    def dead_letter(self, items: Iterable[tuple[int, int | None, str]]) -> None:
        """Move rows ``(seq, http status, error)`` to the dead-letter table."""
        now = time.time()
        with self._transaction() as db:
            for seq, status, error in items:
                db.execute(
                    "INSERT OR REPLACE INTO dead_letters (event_uid, device_id, event_type,"
                    " body, status, error, failed_at, attempts) SELECT event_uid, device_id,"
                    " event_type, body, ?, ?, ?, attempts + 1 FROM outbox WHERE seq = ?",
                    (status, error, now, seq),
                )
                db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    @_locked
    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.execute(
            "SELECT event_uid, device_id, event_type, status, error, failed_at, attempts"
            " FROM dead_letters ORDER BY failed_at"
        ).fetchall()
        return [DeadLetter(*row) for row in rows]

    @_locked
    def replay_dead_letters(self, uids: Sequence[str] | None = None) -> int:
        """Queue dead letters again (all with ``None``, else the given uids); returns how many."""
        if uids is not None and not uids:
            return 0
        where, args = "", tuple[str, ...]()
        if uids:
            where = f" WHERE event_uid IN ({','.join('?' * len(uids))})"
            args = tuple(uids)
        with self._transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox (event_uid, device_id, event_type, body,"
                f" created_at) SELECT event_uid, device_id, event_type, body, ?"
                f" FROM dead_letters{where} ORDER BY failed_at",
                (time.time(), *args),
            )
            db.execute(f"DELETE FROM dead_letters{where}", args)
        return cur.rowcount

    @_locked
    def stats(self) -> QueueStats:
        depth, oldest = self._db.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
        by_status = self._db.execute(
            "SELECT coalesce(status, 0), count(*), max(failed_at) FROM dead_letters"
            " GROUP BY coalesce(status, 0) ORDER BY 1"
        ).fetchall()
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped_measurements'")
        dropped = row.fetchone()
        return QueueStats(
            depth,
            oldest,
            sum(n for _, n, _ in by_status),
            int(dropped[0]) if dropped else 0,
            max((at for _, _, at in by_status), default=None),
            tuple((int(status), int(n)) for status, n, _ in by_status),
        )

    @_locked
    def all_events(self) -> list[dict[str, Any]]:
        """Every queued event body in order (the demo and tests read the local store)."""
        rows = self._db.execute("SELECT body FROM outbox ORDER BY seq").fetchall()
        return [orjson.loads(body) for (body,) in rows]

    def _write_many(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        if args:
            with self._transaction() as db:
                db.executemany(sql, args)
