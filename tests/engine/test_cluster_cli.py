"""``chikaku index --cluster local:N``: the whole path through the command line (a private Ray
started and stopped by the command, nothing of it left running), the resources a job asks for
sized from the nodes, and the command line without Ray installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.library import Library
from tests.conftest import TINY_MODEL
from tests.engine.test_cluster import HOSTILE, make_folder

ROOT = Path(__file__).resolve().parents[2]


def _ray_left(job: Path) -> list[str]:
    """Processes of the private Ray a command started for this job folder (its session), or
    naming its folders."""
    from engine.cluster.submit import LOCAL_RAY, session_members

    ray = json.loads((job / LOCAL_RAY).read_text())
    left = [str(pid) for pid in session_members(ray["pid"])]
    return left + _processes_naming(ray["temp"]) + _processes_naming(str(job))


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(f"{entry}: {cmd[:200]}")
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="looks for leftover processes in /proc")
def test_index_on_a_local_ray_through_the_command_line(tmp_path, capsys):
    pytest.importorskip("ray")
    folder = make_folder(tmp_path / "photos", 20)
    lib_dir, job = tmp_path / "lib", tmp_path / "job"
    Library.open(lib_dir, device="cpu", default_model=TINY_MODEL).close()
    args = ["--library", str(lib_dir), "index", "--cluster", "local:2", "--job-dir", str(job),
            "--quiet", str(folder)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "23 photos planned for the cluster: 20 embedded there (20 added" in out
    for name, words in HOSTILE.items():
        line = next(x for x in out.splitlines() if name in x)
        assert words in line
    # the private Ray is gone, with every process it started, and its files
    assert _ray_left(job) == []
    assert not Path(json.loads((job / "local-ray.json").read_text())["temp"]).exists()
    lib = Library.open(lib_dir, device="cpu")
    try:
        st = lib.status()
        assert (st.photos, st.embedded, len(st.skipped)) == (20, 20, 3)
    finally:
        lib.close()
    # the same command again: the job was ingested, a new plan finds nothing to embed
    assert main(args) == 0
    assert "0 photos planned for the cluster" in capsys.readouterr().out


def test_jobs_are_sized_to_fit_the_nodes():
    pytest.importorskip("ray")
    from engine.cluster.job import size_for, unplaceable

    gpu_nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}, {"CPU": 4.0}]
    sized = size_for(gpu_nodes)
    assert (sized.actors, sized.actor_gpus) == (4, 1.0)
    assert unplaceable(sized, gpu_nodes) is None
    one_cpu = [{"CPU": 1.0}]
    sized = size_for(one_cpu)
    # the embedding actor leaves room for decoding, or nothing would ever finish
    assert sized.actor_cpus + sized.decode_cpus <= 1.0
    assert unplaceable(sized, one_cpu) is None
    too_big = size_for(gpu_nodes)
    why = unplaceable(too_big, [{"CPU": 8.0}])
    assert why is not None and "no node has" in why and "8 CPU, 0 GPU" in why


def test_ray_client_addresses_are_refused_with_the_one_to_use(tmp_path, capsys):
    code = main(["--library", str(tmp_path / "lib"), "index", "--cluster", "ray://head:10001",
                 "--job-dir", str(tmp_path / "job"), str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "Ray Client" in err and "http://HEAD:8265" in err


def test_without_ray_the_command_line_works_and_says_what_to_install(tmp_path):
    """The desktop install has no Ray: the command line loads, and a cluster command says
    which extra to install."""
    script = f"""
import sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
sys.meta_path.insert(0, NoRay())
from engine.cli import main
assert "ray" not in sys.modules
sys.exit(main(["--library", {str(tmp_path / "lib")!r}, "cluster", "submit",
               "--cluster", "local:1", "--job-dir", {str(tmp_path / "job")!r}]))
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "install chikaku[cluster]" in run.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death "
                    "signal ends a killed command's Ray")
def test_a_killed_command_leaves_no_ray_and_reruns_to_the_whole_library(tmp_path, capsys):
    pytest.importorskip("ray")
    folder = make_folder(tmp_path / "photos", 20)
    lib_dir, job = tmp_path / "lib", tmp_path / "job"
    Library.open(lib_dir, device="cpu", default_model=TINY_MODEL).close()
    args = ["--library", str(lib_dir), "index", "--cluster", "local:1", "--job-dir", str(job),
            "--quiet", str(folder)]
    cmd = subprocess.Popen([sys.executable, "-m", "engine.cli", *args], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 240
        while not (job / "submission.json").exists() and time.monotonic() < end:
            assert cmd.poll() is None, "the command ended before its job was submitted"
            time.sleep(0.2)
    finally:
        cmd.kill()  # killed outright: no handler of its own runs
        cmd.wait()
    end = time.monotonic() + 90
    while _ray_left(job) and time.monotonic() < end:
        time.sleep(0.5)
    assert _ray_left(job) == []
    killed_temp = Path(json.loads((job / "local-ray.json").read_text())["temp"])
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().err
    assert _ray_left(job) == [] and not killed_temp.exists()
    lib = Library.open(lib_dir, device="cpu")
    try:
        st = lib.status()
        assert (st.photos, st.embedded, len(st.skipped)) == (23 - 3, 20, 3)
        assert len(lib.index) == 20
    finally:
        lib.close()


def test_features_commands_say_what_they_cannot_do(tmp_path, capsys):
    """`chikaku cluster features` and `chikaku train --features` refuse, with the reason and
    what to do, a model whose towers train (nothing to compute beforehand) and a library without
    captions; no Ray is started for them."""
    pytest.importorskip("ray")
    lib_dir, job = tmp_path / "lib", tmp_path / "job"
    folder = make_folder(tmp_path / "photos", 10)
    lib = Library.open(lib_dir, device="cpu", default_model=TINY_MODEL)
    try:
        lib.add_folders([folder])
        for p in [q for q in sorted(folder.glob("*.jpg")) if q.name not in HOSTILE][:8]:
            lib.set_captions(lib.photo_by_path(p).id, [f"a photo named {p.stem}"])
    finally:
        lib.close()
    features = ["cluster", "features", "--cluster", "local:2", "--job-dir", str(job), "--quiet"]
    assert main(["--library", str(lib_dir), *features]) != 0
    assert "scratch model trains its whole towers" in capsys.readouterr().err
    assert main(["--library", str(lib_dir), "train", "--features", str(job), "--steps", "2"]) != 0
    assert "scratch model trains its whole towers" in capsys.readouterr().err
    # the bundled model's towers are locked, but nothing is captioned in this library
    assert main(["--library", str(tmp_path / "bundled"), *features]) != 0
    assert "no photo has captions yet" in capsys.readouterr().err
    assert not (job / "local-ray.json").exists()  # no Ray was started for any of it
