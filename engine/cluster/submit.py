"""Talking to a Ray cluster through its Jobs API, and the private local Ray of ``local:N``.

Chikaku never creates clusters: the user brings one and gives its Jobs API address
(``http://HEAD:8265``). Ray Data does not run under Ray Client, so ``ray://`` addresses are
refused with the address to use instead. ``local:N`` starts a Ray of N CPUs on this machine for
one command, on the loopback address, with its temporary files under the job folder, and stops it
(and every process it started) afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import ClusterError, require_ray
from .jobdir import SUBMISSION, finished_count, read_plan


def _prctl():
    """libc's prctl, looked up here: nothing may be imported in a child between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()

# Ray's socket paths (its folder, a session folder, sockets/plasma_store) must fit in 107 bytes:
# a deeper job folder gets its Ray files in a new temporary folder, removed afterwards.
MAX_TEMP_PATH = 40
LOCAL_RAY = "local-ray.json"  # the private Ray's process (its session) and folder, for checks
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Target:
    local_cpus: int | None  # local:N
    address: str | None  # the Jobs API of a cluster the user runs


def local_cpus(text: str, option: str) -> int | None:
    """N of a ``local:N`` target (a private local Ray of N CPUs), None for any other target."""
    if not text.startswith("local:"):
        return None
    try:
        n = int(text.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ClusterError(f"{option} {text}: local:N takes a number of CPUs from 1 up")
    return n


def parse_target(text: str) -> Target:
    text = text.strip()
    n = local_cpus(text, "--cluster")
    if n is not None:
        return Target(n, None)
    if text.startswith("ray://"):
        raise ClusterError("Ray Data does not run under Ray Client (ray://): give the cluster's "
                           "Jobs API address instead, http://HEAD:8265")
    if not text.startswith(("http://", "https://")):
        raise ClusterError(f"--cluster {text}: give the Jobs API address of a Ray cluster "
                           "(http://HEAD:8265), or local:N for a private Ray on this machine")
    return Target(None, text.rstrip("/"))


START_ATTEMPTS = 3  # a local Ray whose port was taken meanwhile is started again


def _port_clash(log: Path) -> bool:
    """Whether a local Ray's log says it could not have a port it was given."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    return any(m in text for m in ("port number", "Address already in use", "address already in use"))


def _free_ports(n: int) -> list[int]:
    """n different free ports: the sockets are held together while the system picks them, so
    no two of Ray's components are given the same one."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class LocalRay:
    """A Ray head on this machine for one command: ``with LocalRay(job_dir, 2) as address``."""

    def __init__(self, job_dir: Path, cpus: int, gpus: int = 0) -> None:
        self.job_dir, self.cpus, self.gpus = Path(job_dir), cpus, gpus
        self.gcs: str | None = None  # the head's own address, for ray.init (Ray Train's driver)
        self.proc: subprocess.Popen | None = None
        self.temp: Path | None = None
        self.own_temp = False

    def __enter__(self) -> str:
        require_ray()
        self._clear_earlier()
        for attempt in range(START_ATTEMPTS):
            try:
                return self._start()
            except ClusterError:
                # a port picked free was taken by another program before Ray bound it: pick again
                if attempt + 1 == START_ATTEMPTS or not _port_clash(self.job_dir / "local-ray.log"):
                    raise
        raise AssertionError("unreachable")

    def _start(self) -> str:
        temp = self.job_dir / "ray"
        if len(str(temp)) > MAX_TEMP_PATH:
            temp, self.own_temp = Path(tempfile.mkdtemp(prefix="chikaku-ray-")), True
        temp.mkdir(parents=True, exist_ok=True)
        self.temp = temp
        names = ("port", "node-manager-port", "object-manager-port", "dashboard-agent-grpc-port",
                 "dashboard-agent-listen-port", "metrics-export-port", "runtime-env-agent-port",
                 "ray-client-server-port")
        dashboard, *free = _free_ports(len(names) + 1)
        ports = {f"--{name}": str(port) for name, port in zip(names, free, strict=True)}
        args = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                "--num-cpus", str(self.cpus), "--num-gpus", str(self.gpus),
                "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(dashboard), "--include-dashboard", "true",
                "--temp-dir", str(temp), "--disable-usage-stats",
                *[x for kv in ports.items() for x in kv]]
        log = open(self.job_dir / "local-ray.log", "wb")  # noqa: SIM115 - kept open by Ray
        # no draining on the way out: nothing outlives the command that started it
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=_end_with_parent)
        log.close()
        (self.job_dir / LOCAL_RAY).write_text(json.dumps({"pid": self.proc.pid,
                                                          "temp": str(temp)}))
        address = f"http://127.0.0.1:{dashboard}"
        self.gcs = f"127.0.0.1:{ports['--port']}"
        try:
            _wait_for_api(address, self.proc)
        except BaseException:
            self.stop()
            raise
        return address

    def _clear_earlier(self) -> None:
        """What an earlier command on this job folder left, if it was killed before stopping
        its Ray: processes of that Ray's session (normally gone with it), and its folder."""
        try:
            earlier = json.loads((self.job_dir / LOCAL_RAY).read_text())
            pid, temp = int(earlier["pid"]), Path(earlier["temp"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        for member in session_members(pid):
            if _is_ray(member):  # the id may have been reused since by another process
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(member, signal.SIGKILL)
        if temp.name == "ray" and temp.parent == self.job_dir or temp.name.startswith(
                "chikaku-ray-"):
            shutil.rmtree(temp, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the head (it drains and ends what it started), then end anything left of its
        process session, by process id."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for _ in range(50):
                left = session_members(proc.pid)
                if not left:
                    break
                for pid in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            self.proc = None
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None


def _end_with_parent() -> None:
    """In the child, before Ray starts: on Linux, the kernel sends it SIGTERM when the process
    that started it dies, even killed outright, so a killed ``chikaku`` leaves no Ray running
    (the head then stops everything it started)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _is_ray(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(mark in cmd for mark in (b"ray::", b"raylet", b"gcs_server", b"/ray/",
                                        b"ray.scripts", b"engine.cluster.job"))


def session_members(sid: int) -> list[int]:
    """Processes of the session ``sid`` (the local Ray's own), from /proc."""
    out = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _client(address: str):
    require_ray()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot reach the Ray Jobs API at {address}: {e}") from e


def _wait_for_api(address: str, proc: subprocess.Popen) -> None:
    end = time.monotonic() + START_TIMEOUT
    while True:
        try:
            _client(address)
            return
        except ClusterError:
            if proc.poll() is not None:
                raise ClusterError("the local Ray did not start (see local-ray.log in the job "
                                   "folder)") from None
            if time.monotonic() > end:
                raise ClusterError(f"the local Ray did not answer within {START_TIMEOUT:g} s "
                                   "(see local-ray.log in the job folder)") from None
            time.sleep(0.5)


def submit(address: str, job_dir: Path, python: str | None = None) -> str:
    """Submit the job folder's plan; returns the submission id (also kept in the folder)."""
    job_dir = Path(job_dir).resolve()
    made = read_plan(job_dir)
    attempt = 1 + _last(job_dir).get("attempt", 0) if _last(job_dir).get("job") == made.job else 1
    sid = f"chikaku-{made.job}-{attempt}"
    entry = f"{python or 'python'} -m engine.cluster.job {_quoted(str(job_dir))}"
    _client(address).submit_job(entrypoint=entry, submission_id=sid,
                                metadata={"chikaku_job": made.job})
    (job_dir / SUBMISSION).write_text(json.dumps(
        {"job": made.job, "attempt": attempt, "submission": sid, "address": address}))
    return sid


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _last(job_dir: Path) -> dict:
    try:
        return json.loads((Path(job_dir) / SUBMISSION).read_text())
    except (OSError, ValueError):
        return {}


def running(address: str, job_dir: Path) -> bool:
    """Is the job last submitted for this folder's plan still running on the cluster (its
    coordinator was killed and the job went on)?"""
    last = _last(job_dir)
    if last.get("job") != read_plan(job_dir).job or last.get("address") != address:
        return False
    try:
        return not _client(address).get_job_status(last["submission"]).is_terminal()
    except Exception:  # unknown to this cluster (a local Ray started anew): not running
        return False


def submission(job_dir: Path) -> str:
    sid = _last(job_dir).get("submission")
    if not sid:
        raise ClusterError(f"no job was submitted from {job_dir} yet (`chikaku cluster submit`)")
    return sid


def wait(address: str, job_dir: Path, on_progress: Callable[[int, int], None] | None = None,
         poll: float = 1.0) -> None:
    """Poll the job until it ends; ``on_progress(finished, total)`` after each poll. Raises a
    ClusterError with the end of the job's log when it did not succeed."""
    from ray.job_submission import JobStatus

    job_dir = Path(job_dir).resolve()
    total = read_plan(job_dir).total
    client, sid = _client(address), submission(job_dir)
    while True:
        status = client.get_job_status(sid)
        if on_progress is not None:
            on_progress(min(total, finished_count(job_dir)), total)
        if status.is_terminal():
            break
        time.sleep(poll)
    if status != JobStatus.SUCCEEDED:
        logs = client.get_job_logs(sid).strip().splitlines()
        said = [line for line in logs if line.startswith("chikaku:")]
        tail = "\n".join((said[-1:] if said else []) + logs[-15:])
        raise ClusterError(f"the cluster job {sid} ended {status.value.lower()}; the finished "
                           f"shards are kept and `chikaku cluster submit` finishes it.\n{tail}")


def stop(address: str, job_dir: Path) -> None:
    with contextlib.suppress(Exception):
        _client(address).stop_job(submission(job_dir))


@contextlib.contextmanager
def cluster_address(text: str, job_dir: Path) -> Iterator[tuple[str, str | None]]:
    """(Jobs API address, the Python the job runs with) for ``--cluster``; a local Ray lives as
    long as the block."""
    target = parse_target(text)
    if target.address is not None:
        yield target.address, None
        return
    with LocalRay(job_dir, target.local_cpus) as address:
        yield address, sys.executable
