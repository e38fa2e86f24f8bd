"""The station database file: its lock, the checks before it is opened, and its connections.

Why this module exists: the file outlives every release and every process, so opening it is
guarded. One service per database (a lock file beside it: a second ``cunxiang run`` would
fight over the broker session); a file that is not ours (another program's, a newer
release's, a damaged one) is refused and left untouched, never "repaired"; the writer gets
WAL mode, FULL sync and the migrations (gateway/store/schema.py). Readers — the uplink's
thread, ``cunxiang status``, ``cunxiang export`` — get connections that cannot write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path

from drivers.base import now_ms
from gateway.store import schema as store_schema


class StoreError(Exception):
    """The database cannot be used (corrupt, foreign, too new, locked or unwritable).

    The message names the file and says what to do; the file itself is never overwritten.
    """


def _fail(path: Path, what: str) -> StoreError:
    return StoreError(f"{path}: {what}")


def lock_path(path: Path) -> str:
    """The lock file beside the database (held by the service while it runs)."""
    return f"{path}.lock"


def take_lock(path: Path) -> int:
    """Take the database's lock for this process (its descriptor); StoreError if taken."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _fail(path, f"cannot create the database folder or lock file: {exc}") from None
    deadline = time.monotonic() + 0.5
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise _fail(
                    path,
                    "another cunxiang process is using this database "
                    "(is the service already running?)",
                ) from None
            time.sleep(0.05)


def release_lock(fd: int) -> None:
    """Let another process open the database."""
    with contextlib.suppress(OSError):
        os.close(fd)


def service_running(path: Path) -> bool:
    """True while a process (the service) holds the database's lock."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _check_existing(path: Path) -> None:
    """Refuse a file that is not ours before SQLite writes anything to it."""
    if not path.exists():
        return
    if not path.is_file():
        raise _fail(path, "exists but is not a regular file")
    try:
        with path.open("rb") as file:
            header = file.read(16)
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc}") from None
    if header and header != b"SQLite format 3\x00":
        raise _fail(
            path,
            "is not an SQLite database (a foreign or damaged file); it was left untouched. "
            "Move it away (keep it for inspection) or point storage.path elsewhere",
        )
    if not header:
        return
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if not store_schema.is_blank(probe):
                store_schema.check_ours(probe)
        finally:
            probe.close()
    except store_schema.SchemaError as exc:
        raise _fail(path, f"{exc}; it was left untouched") from None
    except sqlite3.Error as exc:
        raise _fail(
            path,
            f"cannot be read as a database ({exc}); it was left untouched. Move it away "
            "(keep it for inspection) and start again to begin a new one",
        ) from None


def open_writer(path: Path, station_id: str) -> sqlite3.Connection:
    """The one connection that writes (the caller holds the lock): WAL, FULL sync, migrated,
    and the file checked to be `station_id`'s (a new one is made so)."""
    _check_existing(path)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        raise _fail(path, f"cannot open: {exc}") from None
    try:
        db.execute("PRAGMA page_size=1024")
        # A new file only (no effect on an existing one): lets the budget give freed
        # pages back to the file system (gateway/store/budget.py).
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise _fail(path, f"cannot switch to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA journal_size_limit=4194304")
        store_schema.migrate(db)
    except store_schema.SchemaError as exc:
        db.close()
        raise _fail(path, f"{exc}; it was left untouched") from None
    except sqlite3.Error as exc:
        db.close()
        raise _fail(
            path, f"cannot be written ({exc}); check the owner and mode of the file and its folder"
        ) from None
    try:
        _check_owner(db, path, station_id)
    except BaseException:
        db.close()
        raise
    return db


def _check_owner(db: sqlite3.Connection, path: Path, station_id: str) -> None:
    """Refuse another station's file: its records would reach the centre under the wrong id."""
    try:
        row = db.execute("SELECT value FROM state WHERE key = 'station_id'").fetchone()
        if row is None:
            db.execute(
                "INSERT INTO state VALUES ('station_id', ?), ('created_ts', ?)",
                (station_id, str(now_ms())),
            )
    except sqlite3.Error as exc:
        raise _fail(path, f"is damaged ({exc}); it was left untouched") from None
    if row is not None and row[0] != station_id:
        raise _fail(
            path,
            f"belongs to station {row[0]!r}, not {station_id!r}; records in it would reach the "
            "centre under the wrong id. Move the file away or fix station.id",
        )


def open_reader(path: Path) -> sqlite3.Connection:
    """A connection of the service's that only reads (WAL readers never block the writer)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    # SQLite's default page cache (2 MB). The drain reads each page once, in order, from the
    # OS's cache: 8 MB here added 7.5 MB to the service's peak RSS and nothing to its speed.
    db.execute("PRAGMA cache_size=-2000")
    db.execute("PRAGMA query_only=1")
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database opened read-only by another process (``cunxiang status``, ``export``);
    StoreError saying what is wrong if it cannot be."""
    if not path.exists():
        raise _fail(
            path, "no database yet (the service has not run, or storage.path points elsewhere)"
        )
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            if store_schema.is_blank(db):
                raise _fail(path, "the database is empty (the service has not run yet)")
            store_schema.check_ours(db)
        except BaseException:
            db.close()
            raise
    except store_schema.SchemaError as exc:
        raise _fail(path, str(exc)) from None
    except sqlite3.Error as exc:
        raise _fail(
            path, f"cannot read the database ({exc}); run as root or as the service's user"
        ) from None
    return db
