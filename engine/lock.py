"""One writer at a time per library: jobs that change the library (index, train, activate) hold
an exclusive lock. Within a process they wait their turn; another process is refused at once with
a clear message. Searching never takes the lock.

The lock is the operating system's, so it goes when its process ends, however it ends: ``flock``
where ``fcntl`` exists (Linux, macOS); elsewhere (Windows) an exclusive transaction on a small
SQLite file, which SQLite takes with the system's own file locks (``LockFileEx`` on Windows).

A catalog kept in PostgreSQL is shared by every machine that opens it, whatever library folder
each uses, so there the lock is the database's: ``pg_advisory_lock`` on a key the server derives
from the catalog's schema (advisory locks are per database), held by a connection of its own,
which the server ends (and the lock with it) when the holding process dies.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy.exc import ArgumentError

from .errors import LibraryError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class _Busy(Exception):
    """Another process holds the lock."""


class _FlockLock:
    """``flock`` on the lock file itself."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise _Busy from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)  # closing the file would let the lock go in any case
                self._fd = None


class _SqliteLock:
    """An exclusive transaction on ``<lock file>.db``, held open until released."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".db")
        self._conn: sqlite3.Connection | None = None

    def acquire(self, wait: bool) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=24 * 3600 if wait else 0,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise OSError(str(e)) from e
        try:
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise _Busy from None
            raise OSError(str(e)) from e
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            try:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            finally:
                self._conn.close()
                self._conn = None


# How long a writer waits for a lock that was just held (its holder may have died a moment ago).
_PG_GRACE = 1.0
# The key of a library's lock: a 64-bit hash of its purpose and the catalog's schema.
_PG_KEY = "hashtextextended('chikaku ' || %(purpose)s || ' ' || current_schema(), 0)"


def _is_postgres(url: str | None) -> bool:
    return bool(url) and url.startswith("postgres")


class _PgLock:
    """A session-level advisory lock of the PostgreSQL database that holds the catalog."""

    def __init__(self, url: str, purpose: str) -> None:
        self.url = url
        self.purpose = purpose
        self._conn = None

    def shown(self) -> str:
        """The catalog database's URL without its password."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):
            return "given in $CHIKAKU_DATABASE_URL"

    def _connect(self):
        """A connection of its own; OSError where there can be none (no driver, a URL that
        cannot be used, no server): opening the catalog then says what is wrong."""
        from sqlalchemy.engine import make_url

        try:
            import psycopg  # the cluster extra: only a PostgreSQL catalog needs it

            libpq = (make_url(self.url).set(drivername="postgresql")
                     .render_as_string(hide_password=False))
        except ImportError as e:
            raise OSError(f"no module {e.name!r} (install chikaku[cluster])") from e
        except (ArgumentError, ValueError) as e:
            raise OSError(f"the URL cannot be used ({e})") from e
        try:
            return psycopg.connect(libpq, autocommit=True, connect_timeout=30)
        except psycopg.Error as e:
            raise OSError(str(e).strip()) from e

    def acquire(self, wait: bool) -> None:
        """``wait=False`` still waits a moment: the server ends the session of a holder that was
        just killed a little after it died, and its lock with it."""
        conn = self._connect()
        import psycopg

        try:
            if wait:
                conn.execute(f"SELECT pg_advisory_lock({_PG_KEY})", {"purpose": self.purpose})
            else:
                deadline = time.monotonic() + _PG_GRACE
                while not conn.execute(f"SELECT pg_try_advisory_lock({_PG_KEY})",
                                       {"purpose": self.purpose}).fetchone()[0]:
                    if time.monotonic() > deadline:
                        conn.close()
                        raise _Busy
                    time.sleep(0.05)
        except psycopg.Error as e:
            conn.close()
            raise OSError(str(e).strip()) from e
        self._conn = conn

    def announce(self, text: str) -> None:
        """What holds the lock, shown by the connection's name to whoever is refused."""
        with suppress(Exception):
            self._conn.execute("SELECT set_config('application_name', %s, false)",
                               (text[:63],))

    def holder(self) -> str:
        """The name of the connection that holds the lock (another machine's included)."""
        try:
            conn = self._connect()
        except OSError:
            return ""
        import psycopg

        try:
            with conn:
                row = conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE "
                    "datname = current_database()) AND (l.classid::int8 << 32 | l.objid::int8)"
                    f" = {_PG_KEY}", {"purpose": self.purpose}).fetchone()
        except psycopg.Error:  # not allowed to see it: the message goes without its name
            return ""
        return (row[0] or "") if row else ""

    def release(self) -> None:
        if self._conn is not None:
            try:
                with suppress(Exception):
                    self._conn.execute(f"SELECT pg_advisory_unlock({_PG_KEY})",
                                       {"purpose": self.purpose})
            finally:
                self._conn.close()  # ending the session would let the lock go in any case
                self._conn = None


def _os_lock(path: Path) -> _FlockLock | _SqliteLock:
    return _FlockLock(path) if fcntl is not None else _SqliteLock(path)


def _lock_for(path: Path, database_url: str | None, purpose: str
              ) -> _FlockLock | _SqliteLock | _PgLock:
    return _PgLock(database_url, purpose) if _is_postgres(database_url) else _os_lock(path)


@contextmanager
def setup_lock(path: Path, database_url: str | None = None) -> Iterator[None]:
    """Held while a process opens a library, waiting for it if need be: creating or migrating
    the catalog and registering the first model happen one process at a time. Where the lock
    file cannot be made (a read-only library) there is nothing to create, and no lock; nor where
    the PostgreSQL server cannot be reached (opening the catalog then says why)."""
    lock = _lock_for(Path(path), database_url, "setup")
    try:
        lock.acquire(wait=True)
    except OSError:
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _read_holder(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(200).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _write_holder(path: Path, text: str) -> None:
    """What holds the lock, for the message another process shows; only a courtesy."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, text.encode())
        finally:
            os.close(fd)


class WriterLock:
    """``database_url``: the catalog's, when it is not the library folder's SQLite file; with
    PostgreSQL the lock is the database's, shared by every machine using that catalog."""

    def __init__(self, path: Path, database_url: str | None = None) -> None:
        self.path = Path(path)
        self.database_url = database_url if _is_postgres(database_url) else None
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._held: _FlockLock | _SqliteLock | _PgLock | None = None
        self.holds = 0  # how many times this process has taken the lock (0 → 1 holders)

    @property
    def busy(self) -> bool:
        """True while this process holds the lock (some thread of it is changing the library)."""
        return self._depth > 0

    @contextmanager
    def hold(self, what: str) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._acquire(what)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _acquire(self, what: str) -> None:
        lock = _lock_for(self.path, self.database_url, "writer")
        try:
            lock.acquire(wait=False)
        except _Busy:
            holder = lock.holder() if isinstance(lock, _PgLock) else _read_holder(self.path)
            raise LibraryError(
                "another Chikaku process is changing this library"
                + (f" ({holder})" if holder else "")
                + "; try again when it has finished") from None
        except OSError as e:
            where = (f"in the catalog database {lock.shown()}" if isinstance(lock, _PgLock)
                     else str(self.path))
            raise LibraryError(f"cannot open the library lock {where}: "
                               f"{e.strerror or e}") from e
        self._held = lock
        self.holds += 1
        if isinstance(lock, _PgLock):  # another machine may ask: name this one too
            lock.announce(f"{what}, pid {os.getpid()} on {socket.gethostname()}")
        else:
            _write_holder(self.path, f"{what}, pid {os.getpid()}")

    def _release(self) -> None:
        if self._held is not None:
            try:
                if not isinstance(self._held, _PgLock):
                    _write_holder(self.path, "")
            finally:
                self._held.release()
                self._held = None
