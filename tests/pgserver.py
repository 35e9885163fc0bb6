"""A throwaway PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` in a temporary folder,
listening only on a Unix socket there, one fresh database a test. PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` system user (else ``nobody``)."""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL = ("no PostgreSQL server is installed (initdb and pg_ctl not found): install one "
           "(`apt install postgresql`) to run the catalog tests against PostgreSQL too")


def server_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _runner() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs the server's programs as a user other than root."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], user
    raise RuntimeError("running as root with neither a postgres nor a nobody user to run "
                       "PostgreSQL as")


class PgServer:
    def __init__(self, bindir: Path, fsync: bool = False) -> None:
        """``fsync``: the server makes each commit durable, as a real one does (benchmarks); the
        tests kill clients, never the server, so they run without it."""
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="chikaku-pg-"))
        self.prefix, user = _runner()
        if user is not None:
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.data = self.folder / "data"
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "chikaku", "-E",
                      "UTF8", "--no-sync", "--no-instructions")
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                      "-w", "-o", f"-k {self.folder} -c listen_addresses='' "
                      "-c max_connections=200" + ("" if fsync else " -F"), "start")
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._watch = self._watchdog()

    def _watchdog(self) -> subprocess.Popen:
        """A process that stops the server and removes its folder once this process is gone,
        however it ends (a test run killed by a timeout leaves no server behind)."""
        stop = " ".join(shlex.quote(a) for a in [*self.prefix, str(self.bindir / "pg_ctl"), "-D",
                                                 str(self.data), "-m", "immediate", "stop"])
        script = (f'while kill -0 "$0" 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; '
                  f"rm -rf {shlex.quote(str(self.folder))}")
        return subprocess.Popen(["sh", "-c", script, str(os.getpid())], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self.prefix, str(self.bindir / program), *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://chikaku@/{database}?host={self.folder}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(f"dbname=postgres user=chikaku host={self.folder}",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._watch.kill()
        self._watch.wait()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
