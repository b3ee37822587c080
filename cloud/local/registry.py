"""The local stack's device registry: things and their certificates, in one SQLite file.

It plays the part of the AWS IoT registry for the local fleet-provisioning responder:
- `certificates`: certificate id (SHA-256 of the DER certificate), PEM, status (PENDING_ACTIVATION until
  a RegisterThing claims it, then ACTIVE), the SHA-256 of its one-time ownership token and when that
  token expires (AWS: one hour), the thing it belongs to.
- `things`: thing name, the template that made it, its attributes (JSON), when it was created.

Tokens are stored only as hashes and are single-use: `claim_certificate` checks and consumes the token
in one transaction. The connection is shared by threads behind a lock (paho calls back on its own thread).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNERSHIP_TOKEN_TTL = dt.timedelta(hours=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    certificate_id TEXT PRIMARY KEY,
    certificate_pem TEXT NOT NULL,
    status TEXT NOT NULL,
    token_sha256 TEXT UNIQUE,
    token_expires_at TEXT,
    thing_name TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS things (
    thing_name TEXT PRIMARY KEY,
    template_name TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CertificateRecord:
    certificate_id: str
    certificate_pem: str
    status: str
    thing_name: str | None


@dataclass(frozen=True)
class ThingRecord:
    thing_name: str
    template_name: str
    attributes: dict[str, str]
    certificate_ids: tuple[str, ...]


class TokenError(LookupError):
    """An ownership token that is unknown, already used, or expired (the message says which)."""


class Registry:
    """Things and certificates in SQLite at `path` (":memory:" for a throwaway registry)."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if str(path) != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_pending_certificate(
        self, certificate_id: str, certificate_pem: str, ownership_token: str
    ) -> None:
        """Record a new certificate in PENDING_ACTIVATION with its one-time ownership token."""
        now = _now()
        with self._lock:
            self._db.execute(
                "INSERT INTO certificates VALUES (?, ?, 'PENDING_ACTIVATION', ?, ?, NULL, ?)",
                (
                    certificate_id,
                    certificate_pem,
                    _token_hash(ownership_token),
                    (now + OWNERSHIP_TOKEN_TTL).isoformat(),
                    now.isoformat(),
                ),
            )

    def claim_certificate(self, ownership_token: str) -> CertificateRecord:
        """The pending certificate `ownership_token` was issued for; the token is consumed.
        TokenError when it is unknown, used or expired."""
        with self._lock:
            row = self._db.execute(
                "SELECT certificate_id, certificate_pem, status, token_expires_at FROM certificates "
                "WHERE token_sha256 = ?",
                (_token_hash(ownership_token),),
            ).fetchone()
            if row is None:
                raise TokenError("certificateOwnershipToken: unknown or already used")
            cert_id, pem, status, expires_at = row
            self._db.execute(
                "UPDATE certificates SET token_sha256 = NULL, token_expires_at = NULL "
                "WHERE certificate_id = ?",
                (cert_id,),
            )
            if status != "PENDING_ACTIVATION":
                raise TokenError(f"certificateOwnershipToken: certificate {cert_id} is {status}")
            if dt.datetime.fromisoformat(expires_at) < _now():
                raise TokenError("certificateOwnershipToken: expired (valid for one hour)")
            return CertificateRecord(cert_id, pem, status, None)

    def register_thing(
        self, thing_name: str, template_name: str, attributes: dict[str, str], certificate_id: str
    ) -> ThingRecord:
        """Create (or update) the thing and activate the certificate for it, in one transaction."""
        now = _now().isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO things VALUES (?, ?, ?, ?, ?) ON CONFLICT(thing_name) DO UPDATE SET "
                    "template_name = excluded.template_name, attributes = excluded.attributes, "
                    "updated_at = excluded.updated_at",
                    (thing_name, template_name, json.dumps(attributes, sort_keys=True), now, now),
                )
                self._db.execute(
                    "UPDATE certificates SET status = 'ACTIVE', thing_name = ? WHERE certificate_id = ?",
                    (thing_name, certificate_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        thing = self.thing(thing_name)
        assert thing is not None
        return thing

    def thing(self, thing_name: str) -> ThingRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT template_name, attributes FROM things WHERE thing_name = ?", (thing_name,)
            ).fetchone()
            if row is None:
                return None
            certs = self._db.execute(
                "SELECT certificate_id FROM certificates WHERE thing_name = ? ORDER BY created_at",
                (thing_name,),
            ).fetchall()
        return ThingRecord(thing_name, row[0], json.loads(row[1]), tuple(c[0] for c in certs))

    def certificate(self, certificate_id: str) -> CertificateRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT certificate_id, certificate_pem, status, thing_name FROM certificates "
                "WHERE certificate_id = ?",
                (certificate_id,),
            ).fetchone()
        return CertificateRecord(*row) if row else None

    def counts(self) -> dict[str, Any]:
        """{"things": n, "certificates": {status: n}} for dashboards and tests."""
        with self._lock:
            things = self._db.execute("SELECT COUNT(*) FROM things").fetchone()[0]
            rows = self._db.execute("SELECT status, COUNT(*) FROM certificates GROUP BY status").fetchall()
        return {"things": int(things), "certificates": {s: int(n) for s, n in rows}}
