"""The outbound disk spool: every QoS 1 message the device sends, kept until the broker's PUBACK.

SQLite in WAL mode with `synchronous=NORMAL`. Why NORMAL, not FULL: in WAL mode a committed transaction
is in the WAL file as soon as `commit()` returns, so it survives the agent being killed (kill -9, OOM,
a crash) at any moment; NORMAL only skips the fsync per commit, so a *power cut* may lose the last
commits (at 1 Hz telemetry: the last second or so) but never corrupts the database. FULL would fsync
every message: on eMMC/SD flash that costs write amplification and latency for the one failure mode the
device cannot report anyway. Drop-oldest bounding means the spool never fills the disk.

Messages keep an AUTOINCREMENT id (never reused), so the send order is the append order even across
restarts. The size bound counts topic plus payload bytes (SQLite's page overhead comes on top); when an
append would exceed it, the oldest messages are deleted in the same transaction and counted in
`dropped_total`, which is persisted and reported in telemetry. Named counters (the telemetry sequence
number) are stored in the same transaction as the message that carries them.

One owner thread (the sync loop); not shared between threads.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_DROPPED = "dropped_total"


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int


class Spool:
    """A bounded, ordered, crash-safe queue of outbound messages in one SQLite file."""

    def __init__(self, path: Path | str, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            # A spool is worth less than a running agent: keep the broken file aside and start empty.
            aside = self.path.with_suffix(self.path.suffix + f".corrupt-{int(time.time())}")
            log.error("spool %s is unreadable (%s); moved to %s", self.path, exc, aside)
            self.path.rename(aside)
            self._db = self._open()
        row = self._db.execute("SELECT COALESCE(SUM(bytes), 0), COUNT(*) FROM messages").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        db.execute("PRAGMA quick_check").fetchone()
        return db

    # ---- queries ----

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged."""
        return self._count

    @property
    def size_bytes(self) -> int:
        """Topic plus payload bytes held."""
        return self._bytes

    @property
    def dropped_total(self) -> int:
        """Messages deleted unsent to keep the bound, over the spool's whole life."""
        return self.counter(_DROPPED)

    def counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def batch(self, after_id: int, limit: int) -> list[SpooledMessage]:
        """Up to `limit` messages with id > `after_id`, oldest first."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [SpooledMessage(int(r[0]), str(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    # ---- changes (each one transaction) ----

    def append(self, topic: str, payload: bytes, qos: int = 1, counter: tuple[str, int] | None = None) -> int:
        """Store one message (and set `counter` = (name, value) atomically with it); returns its id.

        Drops the oldest messages first when the bound would be exceeded. A message larger than the
        whole bound is refused with ValueError (it could never be kept).
        """
        size = len(topic.encode()) + len(payload)
        if size > self.max_bytes:
            raise ValueError(f"message of {size} bytes exceeds the spool bound of {self.max_bytes} bytes")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            dropped, freed = self._drop_oldest_locked(self._bytes + size - self.max_bytes)
            cur = db.execute(
                "INSERT INTO messages (topic, payload, qos, bytes, created_s) VALUES (?, ?, ?, ?, ?)",
                (topic, sqlite3.Binary(payload), qos, size, time.time()),
            )
            if dropped:
                self._bump_locked(_DROPPED, dropped)
            if counter is not None:
                db.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    counter,
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._bytes += size - freed
        self._count += 1 - dropped
        if dropped:
            log.warning("spool full: dropped the %d oldest message(s)", dropped)
        return int(cur.lastrowid or 0)

    def ack(self, message_id: int) -> bool:
        """Delete a message the broker acknowledged; False if it was already gone (dropped or acked)."""
        row = self._db.execute("DELETE FROM messages WHERE id = ? RETURNING bytes", (message_id,)).fetchone()
        if row is None:
            return False
        self._bytes -= int(row[0])
        self._count -= 1
        return True

    def close(self) -> None:
        self._db.close()

    # ---- internals ----

    def _drop_oldest_locked(self, excess_bytes: int) -> tuple[int, int]:
        """Inside a transaction: delete the oldest messages until `excess_bytes` are freed."""
        if excess_bytes <= 0:
            return 0, 0
        dropped = freed = 0
        while freed < excess_bytes:
            rows = self._db.execute("SELECT id, bytes FROM messages ORDER BY id LIMIT 64").fetchall()
            if not rows:
                break
            last_id = rows[-1][0]
            for msg_id, size in rows:
                if freed >= excess_bytes:
                    last_id = msg_id - 1
                    break
                dropped += 1
                freed += int(size)
            self._db.execute("DELETE FROM messages WHERE id <= ?", (last_id,))
        return dropped, freed

    def _bump_locked(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )
