"""Engine jobs run in a process of their own, so that a test can kill them with SIGKILL.

    python -m tests.reliability.jobs SPEC_JSON   run one job, then exit
    python -m tests.reliability.jobs --serve     one SPEC_JSON a line on stdin: fork a child
                                                 for each (the engine is imported only once)

A job writes its own lines to stdout: "TOTAL n" (photos it has to embed), "EVENT ..." (training),
"DONE {json}" when it finished, "ERROR ..." when it raised. In serve mode the server adds
"FORKED pid" and "EXIT pid status", and with ``kill_after`` it sends SIGKILL that many seconds
after the child says it started (an index job at once, a training job at a given step). Only
the server reaps its children, so the pid it kills is always its own live (or unreaped) child.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
import traceback

from engine.config import IndexingConfig, TrainOptions
from engine.library import Library


def say(line: str) -> None:
    print(line, flush=True)


def _wait(spec: dict, stage: str) -> None:
    """With ``wait_at`` == stage: say so (a file beside ``wait_for``), then wait until the file
    ``wait_for`` exists, so that several processes start the same step at the same moment."""
    if spec.get("wait_at") != stage:
        return
    go = spec["wait_for"]
    with open(f"{go}.{os.getpid()}.ready", "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.001)


def _open(spec: dict) -> Library:
    indexing = IndexingConfig(batch_size=spec.get("batch_size", 4),
                              decode_workers=spec.get("decode_workers", 2))
    shared = {"database_url": spec["database_url"]} if spec.get("database_url") else {}
    return Library.open(spec["library"], device="cpu", default_model=spec["model"],
                        indexing=indexing, **shared)


def _reset_peak_rss() -> None:
    """A new process inherits its parent's peak-RSS mark; start counting from here."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def index_job(spec: dict, started) -> None:
    _reset_peak_rss()
    """``started`` is called at once, or with ``signal_at`` "indexing" when embedding begins."""
    if spec.get("signal_at") != "indexing":
        started()
    if spec.get("crash_at"):  # die exactly between writing a temporary file and renaming it
        real_replace = os.replace

        def replace(src, dst, **kw):
            if str(dst).endswith(spec["crash_at"]):
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, **kw)

        os.replace = replace
    if spec.get("memory_guard_gb"):  # a runaway allocation fails here instead of on the host
        # over what the job allocates, not over PyTorch's own mappings (a CUDA build maps
        # gigabytes of address space as it loads; the library imports it only when a model is)
        import torch  # noqa: F401

        with open("/proc/self/status") as f:
            vm = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
        limit = vm + int(spec["memory_guard_gb"] * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    _wait(spec, "open")
    lib = _open(spec)
    _wait(spec, "work")
    pause = spec.get("pause", 0.0)
    told = []

    def progress(p) -> None:
        if p.kind != "indexing":
            return
        if not told:
            told.append(p.total)
            say(f"TOTAL {p.total}")
            if spec.get("signal_at") == "indexing":
                started()
        if p.path and pause:
            time.sleep(pause)  # a slower model: more places for a kill to land

    report = lib.add_folders(spec["folders"], progress=progress)
    say("DONE " + json.dumps({k: getattr(report, k) for k in (
        "scanned", "added", "updated", "moved", "removed", "unchanged", "embedded",
        "reused")} | {"skipped": len(report.skipped), "reasons": report.skipped,
                      "maxrss_mb": _peak_rss_mb()}))


def train_job(spec: dict, started) -> None:
    """``started`` is called when training reaches step ``signal_at_step``: the kill lands there."""
    lib = _open(spec)
    pause = spec.get("pause", 0.0)

    def listen(event) -> None:
        say(f"EVENT {event.kind} {event.done} {event.message}")
        if event.kind == "step" and event.job == "training":
            if event.done == spec.get("signal_at_step"):
                started()
            time.sleep(pause)

    result = lib.train(TrainOptions(**spec["options"]), progress=listen)
    say("DONE " + json.dumps({"version": result.version, "activated": result.activated}))


def search_job(spec: dict, started) -> None:
    """Search again and again for ``seconds``; report how many searches and what went wrong."""
    started()
    lib = _open(spec)
    lib.warm_up()  # as the app does when a library opens: the searches below are the test
    _wait(spec, "work")
    queries = spec.get("queries", ["a dog", "people on a beach", "a red bar"])
    count, errors = 0, []
    end = time.monotonic() + spec["seconds"]
    while time.monotonic() < end:
        try:
            hits = lib.search(queries[count % len(queries)], k=5)
            assert hits and all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
        except Exception as e:  # every failure is counted and shown, none stops the loop
            errors.append(f"{type(e).__name__}: {e}")
        count += 1
    say("DONE " + json.dumps({"searches": count, "errors": errors[:5],
                              "error_count": len(errors)}))


JOBS = {"index": index_job, "train": train_job, "search": search_job}


def run(spec: dict, started=lambda: None) -> int:
    try:
        JOBS[spec["kind"]](spec, started)
    except BaseException as e:
        traceback.print_exc()
        say(f"ERROR {type(e).__name__}: {e}")
        return 1
    return 0


def serve() -> None:
    for line in sys.stdin:
        spec = json.loads(line)
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: run the job and leave without any of the server's cleanup
            os.close(r)
            code = run(spec, started=lambda fd=w: os.write(fd, b"!"))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        os.close(w)
        say(f"FORKED {pid}")
        if spec.get("kill_after") is not None:
            ready, _, _ = select.select([r], [], [], 120)
            if ready and os.read(r, 1):
                time.sleep(spec["kill_after"])
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(r)
        say(f"EXIT {pid} {status}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit(run(json.loads(sys.argv[1])))
