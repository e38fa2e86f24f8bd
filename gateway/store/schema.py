"""The layout of the station database and the migrations that build it, one version at a time.

Why a module of its own: the database outlives every release of the program. A box in a village
may be upgraded from any earlier version, with a backlog of records still waiting for the centre,
so the schema carries a version number (``PRAGMA user_version``) from the first release on and
every change is a numbered migration applied in order inside one transaction. A file that is not
ours (another program's SQLite file, or a file from a newer release) is refused, never "repaired".

Layout (version 1):

``outbox``
    Every uplink record, append-only. ``seq`` is the record's sequence number of docs/protocol.md §4;
    AUTOINCREMENT keeps it from ever being reused, even after the newest rows are deleted.
    ``kind`` is 0 for a reading, 1 for an event, 2 for a receipt. Readings are stored compactly
    (about 25 bytes a row): ``chan`` points at the (sensor, quantity, flags) triple in
    ``channels`` and ``v`` is the value already written as JSON text (``12.5``, ``true``).
    Events and receipts keep their JSON members after ``seq`` and ``ts`` in ``body``.
    A partial index lists only events and receipts in seq order, so readings pay nothing for
    it (queries name it with INDEXED BY: without statistics SQLite would scan the readings).
``channels``
    One row per distinct (sensor, quantity, flags); readings refer to it by ``id``.
``state``
    Small key/value rows that change often but stay small (the ranges of acknowledged or
    deleted seqs, the status the service reports, the last value per sensor, sensor faults).
    Keeping them in one table means one page written per commit for all of them.
``alerts``
    The alert log: each accepted alert id once (de-duplication survives restarts), its
    broadcast state and the record the alerts module needs to resume it after a power cut.
    A finished alert keeps only a compact record (gateway/store/alert_log.py).

Version 2 adds:

``programmes``
    The programme schedules in force (docs/protocol.md §10): per (signing key, schedule id) the
    highest version received and its payload as received, withdrawn ones (no items) included,
    so that an older retained copy cannot bring a schedule back after a restart.

Version 3 adds ``answered``: the verified messages already answered (gateway/downlink/answered.py).
New databases use ``auto_vacuum = INCREMENTAL`` so the storage budget can give freed pages
back to the file system.
"""

from __future__ import annotations

import sqlite3

#: ``PRAGMA application_id`` of a Cunxiang station database ("CXGW").
APPLICATION_ID = 0x43584757

#: Kinds of outbox rows.
KIND_READING = 0
KIND_EVENT = 1
KIND_RECEIPT = 2

_V1 = """
CREATE TABLE outbox (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    ts   INTEGER NOT NULL,
    chan INTEGER,
    v    TEXT,
    body TEXT
);
CREATE INDEX outbox_records ON outbox (seq) WHERE kind > 0;
CREATE TABLE channels (
    id       INTEGER PRIMARY KEY,
    sensor   TEXT NOT NULL,
    quantity TEXT NOT NULL,
    flags    TEXT NOT NULL,
    UNIQUE (sensor, quantity, flags)
);
CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    updated_ts  INTEGER NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX alerts_received ON alerts (received_ts);
"""

_V2 = """
CREATE TABLE programmes (
    key         TEXT NOT NULL,
    id          TEXT NOT NULL,
    version     INTEGER NOT NULL,
    received_ts INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    PRIMARY KEY (key, id)
);
"""

#: Migration N (1-based) brings a database from version N-1 to version N. Append only.
#: Version 3: the "answered once" log of docs/protocol.md §6 (gateway/downlink/answered.py): one row per
#: verified message the station answered, by (key, payload SHA-256), with the id it named.
_V3_ANSWERED = """
CREATE TABLE answered (
    key    TEXT NOT NULL,
    sha256 BLOB NOT NULL,
    id     TEXT NOT NULL,
    ts     INTEGER NOT NULL,
    PRIMARY KEY (key, sha256)
) WITHOUT ROWID;
CREATE INDEX answered_ts ON answered (ts);
"""

#: Migration N (1-based) brings a database from version N-1 to version N. Append only.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3_ANSWERED)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The file is not a Cunxiang database this release can use."""


def is_blank(db: sqlite3.Connection) -> bool:
    """True for a new, empty database (no tables, no application id)."""
    tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    return bool(tables == 0 and app_id == 0)


def check_ours(db: sqlite3.Connection) -> int:
    """The schema version of an existing database, or SchemaError if it is not ours or too new."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        raise SchemaError(
            "it is an SQLite database of another program (application id "
            f"{app_id:#x}, expected {APPLICATION_ID:#x})"
        )
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"it was written by a newer Cunxiang (schema version {version}; this release "
            f"knows up to {SCHEMA_VERSION}); upgrade the program, do not delete the file"
        )
    return version


def migrate(db: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had before (0 = new)."""
    blank = is_blank(db)
    version = 0 if blank else check_ours(db)
    if version == SCHEMA_VERSION:
        return version
    db.execute("BEGIN IMMEDIATE")
    try:
        if blank:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return version


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    return [part.strip() for part in script.split(";") if part.strip()]
