"""The SQLite outbox: durability settings, atomic commits, caps, dead letters, faults, kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from iot_bridge.errors import StoreError
from iot_bridge.events import Event
from iot_bridge.outbox.store import Store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def run_start(uid: str, device: str = "dev-a", t: float = T0) -> Event:
    return Event(uid, t, device, "run_start", {"session_id": f"s-{uid}", "started_at": "x"})


def run_stop(uid: str, device: str = "dev-a", t: float = T0) -> Event:
    return Event(uid, t, device, "run_stop", {"session_id": f"s-{uid}", "duration_s": 1.0})


def measurement(uid: str, device: str = "dev-a", watts: float = 1.0) -> Event:
    return Event(uid, T0, device, "power_measurement", {"power_w": watts})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "bridge.db")
    yield s
    s.close()


def uids(store: Store) -> list[str]:
    return [e["event_uid"] for e in store.all_events()]


# -- R17: durability settings -----------------------------------------------------------------


def test_pragmas_are_wal_and_full(store: Store, tmp_path: Path) -> None:
    assert store.pragmas() == ("wal", 2)
    # the setting is on the file, not just reported: an independent connection sees WAL
    with sqlite3.connect(tmp_path / "bridge.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- commit -----------------------------------------------------------------------------------


def test_commit_writes_events_and_states(store: Store) -> None:
    added = store.commit(
        [run_start("u1"), run_stop("u2")], {"dev-a": {"phase": "idle", "n": 2}}, now=T0 + 5
    )
    assert added == 2
    events = store.all_events()
    assert events == [run_start("u1").to_dict(), run_stop("u2").to_dict()]
    assert store.load_states() == {"dev-a": {"phase": "idle", "n": 2}}
    pending = store.pending(10)
    assert [(p.event_uid, p.device_id, p.event_type, p.attempts) for p in pending] == [
        ("u1", "dev-a", "run_start", 0),
        ("u2", "dev-a", "run_stop", 0),
    ]
    assert orjson.loads(pending[0].body) == run_start("u1").to_dict()
    assert pending[0].seq < pending[1].seq
    assert store.stats().oldest_created_at == T0 + 5


def test_commit_ignores_duplicate_event_uids(store: Store) -> None:
    assert store.commit([run_start("u1")], {}) == 1
    # the same uid again (an MQTT redelivery) with a different body: first one wins
    again = Event("u1", T0 + 99, "dev-a", "run_start", {"session_id": "other"})
    assert store.commit([again, run_stop("u2")], {}) == 1
    assert uids(store) == ["u1", "u2"]
    assert store.all_events()[0]["payload"]["session_id"] == "s-u1"
    assert store.stats().depth == 2


def test_states_round_trip_update_and_delete(store: Store) -> None:
    state_a = {"phase": "working", "since": 12.5, "nested": {"k": [1, 2, None]}, "ok": True}
    store.commit([], {"dev-a": state_a, "dev-b": {"phase": "idle"}})
    assert store.load_states() == {"dev-a": state_a, "dev-b": {"phase": "idle"}}
    store.commit([], {"dev-a": {"phase": "standby"}})  # upsert, dev-b untouched
    assert store.load_states() == {"dev-a": {"phase": "standby"}, "dev-b": {"phase": "idle"}}
    store.commit([], {"dev-b": None})  # None deletes
    assert store.load_states() == {"dev-a": {"phase": "standby"}}
    store.commit([], {"never-existed": None})
    assert store.load_states() == {"dev-a": {"phase": "standby"}}


def test_states_survive_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "b.db")
    s.commit([run_start("u1")], {"dev-a": {"phase": "working"}})
    s.close()
    s2 = Store(tmp_path / "b.db")
    try:
        assert s2.load_states() == {"dev-a": {"phase": "working"}}
        assert uids(s2) == ["u1"]
    finally:
        s2.close()


def test_commit_is_atomic_when_the_state_write_fails(store: Store) -> None:
    store.commit([run_start("u0")], {"dev-a": {"n": 0}})
    # make the state write fail inside the transaction, after the events were inserted
    store._db.execute(
        "CREATE TEMP TRIGGER refuse_state BEFORE UPDATE ON detector_state"
        " BEGIN SELECT RAISE(ABORT, 'state write refused'); END"
    )
    with pytest.raises(StoreError, match="state write refused"):
        store.commit([run_stop("u1"), measurement("m1")], {"dev-a": {"n": 1}})
    assert uids(store) == ["u0"]  # neither the events ...
    assert store.load_states() == {"dev-a": {"n": 0}}  # ... nor the state
    assert store.stats().depth == 1
    store._db.execute("DROP TRIGGER refuse_state")
    assert store.commit([run_stop("u1")], {"dev-a": {"n": 1}}) == 1
    assert uids(store) == ["u0", "u1"]


# -- measurement cap --------------------------------------------------------------------------


def test_measurement_cap_drops_oldest_measurements_only(tmp_path: Path) -> None:
    s = Store(tmp_path / "cap.db", measurement_cap=3)
    try:
        s.commit([run_start("start")], {})
        s.commit([measurement(f"m{i}") for i in range(4)], {})  # one too many
        assert uids(s) == ["start", "m1", "m2", "m3"]
        assert s.stats().dropped_measurements == 1
        s.commit([run_stop("stop"), measurement("m4"), measurement("m5")], {})
        assert uids(s) == ["start", "m3", "stop", "m4", "m5"]
        assert s.stats().dropped_measurements == 3
        # many session events never count against the cap and are never dropped
        s.commit([run_start(f"s{i}") for i in range(10)], {})
        s.commit([measurement("m6")], {})
        assert uids(s) == ["start", "stop", "m4", "m5", *(f"s{i}" for i in range(10)), "m6"]
        assert s.stats().dropped_measurements == 4
        assert s.stats().depth == 12 + 3
    finally:
        s.close()


# -- delivery bookkeeping, dead letters ------------------------------------------------------


def test_pending_delivered_failed(store: Store) -> None:
    store.commit([run_start(f"u{i}") for i in range(5)], {})
    first = store.pending(2)
    assert [p.event_uid for p in first] == ["u0", "u1"]
    store.failed([first[0].seq], "HTTP 503")
    store.failed([first[0].seq], "HTTP 503 again")
    assert store.pending(1)[0].attempts == 2
    store.delivered([p.seq for p in first])
    assert [p.event_uid for p in store.pending(10)] == ["u2", "u3", "u4"]
    store.delivered([])
    assert store.stats().depth == 3


def test_dead_letters_and_replay(store: Store) -> None:
    store.commit([run_start("a1"), run_start("b1", "dev-b"), run_stop("a2"), run_stop("b2")], {})
    rows = {p.event_uid: p for p in store.pending(10)}
    store.failed([rows["b1"].seq], "HTTP 503")
    store.dead_letter([(rows["b1"].seq, 400, "invalid_event: bad")])
    time.sleep(0.01)  # dead letters are listed by failure time
    store.dead_letter([(rows["b2"].seq, 404, "unknown_device")])
    assert uids(store) == ["a1", "a2"]
    letters = store.dead_letters()
    assert [(d.event_uid, d.device_id, d.event_type, d.status, d.error, d.attempts)
            for d in letters] == [
        ("b1", "dev-b", "run_start", 400, "invalid_event: bad", 2),
        ("b2", "dev-a", "run_stop", 404, "unknown_device", 1),
    ]  # fmt: skip
    assert letters[0].failed_at <= letters[1].failed_at
    stats = store.stats()
    assert (stats.depth, stats.dead_letters) == (2, 2)

    assert store.replay_dead_letters(["b2"]) == 1  # by uid
    assert uids(store) == ["a1", "a2", "b2"]
    assert [d.event_uid for d in store.dead_letters()] == ["b1"]
    assert store.replay_dead_letters(["no-such-uid"]) == 0
    assert store.replay_dead_letters() == 1  # all (the rest)
    assert uids(store) == ["a1", "a2", "b2", "b1"]
    assert store.dead_letters() == []
    # the replayed body is the original event, byte for byte
    assert store.all_events()[3] == run_start("b1", "dev-b").to_dict()
    assert store.replay_dead_letters() == 0


def test_stats(store: Store) -> None:
    empty = store.stats()
    assert (empty.depth, empty.oldest_created_at, empty.dead_letters) == (0, None, 0)
    assert empty.dropped_measurements == 0
    store.commit([run_start("u1")], {}, now=T0 + 10)
    store.commit([run_stop("u2")], {}, now=T0 + 20)
    seq = store.pending(1)[0].seq
    store.dead_letter([(seq, 400, "x")])
    stats = store.stats()
    assert (stats.depth, stats.oldest_created_at, stats.dead_letters) == (1, T0 + 20, 1)


# -- faults -----------------------------------------------------------------------------------


def test_garbage_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    with pytest.raises(StoreError, match=str(path)):
        Store(path)


def test_corrupt_pages_raise_store_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    s = Store(path)
    for i in range(20):
        s.commit([run_start(f"u{i}-{j}") for j in range(50)], {f"dev{i}": {"n": i}})
    s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    rng = random.Random(7)
    for p in range(2, len(data) // page):  # keep the header page, trash the b-tree pages
        start = p * page
        data[start : start + page] = rng.randbytes(page)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError):
        Store(path)


def _cap_at_current_size(store: Store) -> None:
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def test_disk_full_commit_raises_and_keeps_previous_data(store: Store) -> None:
    store.commit([run_start("before")], {"dev-a": {"n": 1}})
    _cap_at_current_size(store)
    big = [measurement(f"m{i}", watts=float(i)) for i in range(200)]
    big_state = {"dev-a": {"n": 2, "pad": "x" * 20_000}}
    with pytest.raises(StoreError, match="full"):
        store.commit([run_stop("after"), *big], big_state)
    assert uids(store) == ["before"]
    assert store.load_states() == {"dev-a": {"n": 1}}
    with pytest.raises(StoreError, match="full"):
        store.probe_writable()
    # space comes back
    store._db.execute("PRAGMA max_page_count = 1000000")
    store.probe_writable()
    assert store.commit([run_stop("after"), *big], big_state) == 201
    assert uids(store)[:2] == ["before", "after"]
    assert store.load_states()["dev-a"]["n"] == 2


# -- kill -9 ----------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from iot_bridge.events import Event
    from iot_bridge.outbox.store import Store

    store = Store(Path(sys.argv[1]))
    state = store.load_states().get("dev", {"next": 0})
    i = state["next"]
    out = sys.stdout
    while True:
        ev = Event(f"ev-{i:07d}", 1767225600.0 + i, "dev", "run_start",
                   {"session_id": f"s-{i}", "i": i, "pad": "p" * (i % 97)})
        store.commit([ev], {"dev": {"next": i + 1, "last_uid": ev.event_uid}})
        out.write(f"{i}\\n")
        out.flush()
        i += 1
    """
)


def _check_consistent(path: Path, acked_at_least: int) -> int:
    """Open the store after a crash; returns how many events it holds (all of 0..N-1)."""
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    s = Store(path)  # runs quick_check itself and refuses corruption
    try:
        events = s.all_events()
        n = len(events)
        assert [e["payload"]["i"] for e in events] == list(range(n))  # no gaps, no reordering
        for e in events:
            i = e["payload"]["i"]
            assert e["event_uid"] == f"ev-{i:07d}"
            assert e["payload"]["pad"] == "p" * (i % 97)  # every row complete
        # acknowledged (printed after commit) means durable; at most the one in flight extra
        assert n >= acked_at_least
        assert n <= acked_at_least + 1
        # the state was written in the same transaction as the last event
        assert s.load_states() == {"dev": {"next": n, "last_uid": f"ev-{n - 1:07d}"}}
        return n
    finally:
        s.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_leaves_a_complete_consistent_store(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "crash.db"
    total = 0
    for _ in range(3):  # three crashes, each run continues from the recovered state
        target = rng.randint(30, 300)
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        last = -1
        seen = 0
        try:
            while seen < target:
                line = proc.stdout.readline()
                if not line:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"writer died early: {err}")
                last = int(line)
                seen += 1
            time.sleep(rng.random() * 0.02)  # a random moment, mid-commit or not
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # drain what was acknowledged before the kill landed
        rest = proc.stdout.read().split()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
        if rest:
            last = int(rest[-1])
        assert proc.returncode == -signal.SIGKILL
        assert last >= total  # each run made progress
        n = _check_consistent(path, last + 1)
        assert n > total
        total = n


def test_two_threads_share_the_store_safely(store: Store) -> None:
    """Small groups commit on the event loop's thread while delivery works on the db thread:
    without the store's lock the two transactions collided ("cannot start a transaction
    within a transaction") and one thread's ROLLBACK could undo the other's rows."""
    import threading

    errors: list[BaseException] = []
    written = [f"uid-{i}" for i in range(400)]

    def ingest() -> None:
        try:
            for i, uid in enumerate(written):
                store.commit([run_start(uid)], {"dev-a": {"n": i}})
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    def deliver() -> None:
        try:
            for _ in range(400):
                rows = store.pending(50)
                store.delivered([r.seq for r in rows[:10]])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingest), threading.Thread(target=deliver)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    delivered = 400 - store.stats().depth
    assert delivered > 0
    remaining = {r.event_uid for r in store.pending(1000)}
    assert remaining <= set(written)
    assert store.load_states() == {"dev-a": {"n": 399}}
