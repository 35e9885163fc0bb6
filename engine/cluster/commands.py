"""The command line of cluster indexing: ``chikaku index --cluster URL --job-dir DIR PATH...``
and its steps, ``chikaku cluster plan | submit | wait | ingest``; and of training's features
made on a cluster, ``chikaku cluster features --cluster URL --job-dir DIR``.

Nothing here imports Ray: the steps that need it import it when they run, and say which extra
to install when it is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

CLUSTER_HELP = ("a Ray cluster's Jobs API address (http://HEAD:8265), or local:N for a private "
                "Ray of N CPUs on this machine")


def add_index_options(ix: argparse.ArgumentParser) -> None:
    ix.add_argument("--cluster", metavar="URL", help="embed on a Ray cluster: " + CLUSTER_HELP)
    ix.add_argument("--job-dir", metavar="DIR", help="with --cluster: the job's folder, on "
                    "storage every node sees at the same path (rerun with it to resume)")


def add_cluster_command(sub, common: argparse.ArgumentParser) -> None:
    cl = sub.add_parser("cluster", parents=[common], help="index on a Ray cluster, step by step",
                        description="The steps of `chikaku index --cluster`: plan the job from "
                        "the catalog, submit it, wait for it, ingest its shards.")
    steps = cl.add_subparsers(dest="step", metavar="STEP", required=True)
    pl = steps.add_parser("plan", parents=[common], help="write the photos to embed into DIR")
    pl.add_argument("paths", nargs="*", metavar="PATH",
                    help="folders to index (default: every folder of the library)")
    for name, text in (("submit", "submit the job (local:N also waits for it)"),
                       ("wait", "follow the job until it ends"),
                       ("ingest", "store the job's shards in the library")):
        st = steps.add_parser(name, parents=[common], help=text)
        if name != "ingest":
            st.add_argument("--cluster", metavar="URL", required=True, help=CLUSTER_HELP)
        if name == "ingest":
            st.add_argument("--partial", action="store_true",
                            help="take the shards there are, although the job is not finished")
    ft = steps.add_parser("features", parents=[common],
                          help="compute training's tower features on the cluster, into DIR",
                          description="Run the frozen towers on every captioned photo's views "
                          "and every caption on the cluster, and merge the results into a store "
                          "in DIR that `chikaku train --features DIR` reads. Only what DIR's "
                          "store lacks is computed; rerun with the same DIR to resume.")
    ft.add_argument("--cluster", metavar="URL", required=True, help=CLUSTER_HELP)
    ft.add_argument("--crops", type=int, default=0, metavar="N",
                    help="also N random crops of each photo (as `chikaku train --crops N`)")
    for st in steps.choices.values():
        st.add_argument("--job-dir", metavar="DIR", required=True, help="the job's folder")
        st.add_argument("--quiet", action="store_true", help="no progress bar")


def _bar(quiet: bool, desc: str, unit: str = "photo"):
    """A progress callback (done, total) drawing a bar on standard error, and its closer."""
    from tqdm import tqdm

    bar = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr)
        bar.n = done
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    return show, close


def _folders(lib, paths: list[str]) -> list[str]:
    if paths:
        return paths
    paused = set(lib.paused_folders())
    folders = [f for f in lib.folders() if Path(f).is_dir() and f not in paused]
    if not folders:
        from . import ClusterError

        raise ClusterError("the library has no folders yet: give the folders to index")
    return folders


def _run_job(target: str, job_dir: Path, quiet: bool,
             what: str = "embedding on the cluster", unit: str = "photo") -> None:
    from .coordinator import finished
    from .jobdir import read_plan
    from .submit import cluster_address, running, submit, wait

    if read_plan(job_dir).total <= finished(job_dir):
        return
    with cluster_address(target, job_dir) as (address, python):
        if not running(address, job_dir):  # else follow the job a killed command left going
            submit(address, job_dir, python)
        show, close = _bar(quiet, what, unit)
        try:
            wait(address, job_dir, show)
        except KeyboardInterrupt:
            from .submit import stop

            stop(address, job_dir)  # the shards finished so far are kept
            raise
        finally:
            close()


def _ingest(lib, job_dir: Path, quiet: bool, shown: Callable[[str], str],
            partial: bool = False) -> int:
    from .coordinator import ingest

    show, close = _bar(quiet, "indexing")

    def progress(p) -> None:
        if p.kind == "indexing":
            show(p.done, p.total)

    try:
        report = ingest(lib, job_dir, progress=progress, partial=partial)
    finally:
        close()
    print(f"{report.planned} photos planned for the cluster: {report.embedded} embedded there "
          f"({report.added} added, {report.updated} updated), {len(report.skipped)} skipped, "
          f"from {report.shards} new shards")
    _refused(report.refused, shown)
    fin = report.finish
    if fin is not None:
        print(f"{fin.scanned} photos found: {fin.moved} moved, {fin.removed} removed, "
              f"{fin.unchanged} unchanged, {len(fin.skipped)} skipped; "
              f"{fin.embedded} embedded here (changed since the plan)")
        skipped = fin.skipped
    else:
        skipped = report.skipped
    _skipped(skipped, "skipped:", shown)
    return 0


def _refused(refused: dict[str, str], shown: Callable[[str], str]) -> None:
    for name, why in sorted(refused.items()):
        print(f"shard refused: {name}: {shown(why)}")


def _skipped(skipped: dict[str, str], heading: str, shown: Callable[[str], str]) -> None:
    if skipped:
        print(heading)
        for path, reason in sorted(skipped.items()):
            print(f"  {shown(path)}: {shown(reason)}")


def run_index(args, open_library: Callable, shown: Callable[[str], str]) -> int:
    """``chikaku index --cluster URL --job-dir DIR PATH...``: plan (or resume the job DIR holds
    for these folders), run the job, ingest."""
    from . import ClusterError
    from .coordinator import ingested, plan
    from .jobdir import read_plan

    if not args.cluster:
        raise ClusterError("--job-dir goes with --cluster URL (the cluster that runs the job)")
    if not args.job_dir:
        raise ClusterError("--cluster needs --job-dir DIR: a folder every node sees")
    from . import require_ray
    from .submit import parse_target

    parse_target(args.cluster)  # a wrong address is said before anything is scanned
    require_ray()
    job_dir = Path(args.job_dir).expanduser().resolve()
    lib = open_library(args)
    try:
        folders = [str(Path(f).expanduser().resolve()) for f in _folders(lib, args.paths)]
        resume = (job_dir / "plan.json").exists() and not ingested(job_dir)
        if resume and sorted(read_plan(job_dir).roots) != sorted(folders):
            resume = False
        if not resume:
            made = plan(lib, folders, job_dir)
            print(f"planned: {made.total} photos to embed on the cluster", file=sys.stderr)
        else:
            print(f"resuming the job in {job_dir}", file=sys.stderr)
        _run_job(args.cluster, job_dir, args.quiet)
        return _ingest(lib, job_dir, args.quiet, shown)
    finally:
        lib.close()


def run_features(args, open_library: Callable, shown: Callable[[str], str]) -> int:
    """``chikaku cluster features``: plan (or resume the unfinished job DIR holds), run the job,
    merge its shards into DIR's store."""
    from . import require_ray
    from .features import build, built, is_features_job, plan_features
    from .jobdir import read_plan
    from .submit import parse_target

    parse_target(args.cluster)
    require_ray()
    job_dir = Path(args.job_dir).expanduser().resolve()
    lib = open_library(args)
    try:
        resume = (is_features_job(job_dir) and not built(job_dir)
                  and read_plan(job_dir).extra.get("views") == _views(args.crops))
        if resume:
            print(f"resuming the features job in {job_dir}", file=sys.stderr)
        else:
            made = plan_features(lib, job_dir, crops=args.crops)
            print(f"planned: {made.extra['photos']} photos ({len(made.extra['views'])} views "
                  f"each) and {made.extra['captions']} captions to run the towers on",
                  file=sys.stderr)
        _run_job(args.cluster, job_dir, args.quiet, "tower features on the cluster",
                 unit="item")
        report = build(lib, job_dir)
    finally:
        lib.close()
    print(f"features of {report.photos} photos ({len(report.views)} views each) and "
          f"{report.captions} captions in {report.store}; train with them: "
          f"chikaku train --features {shown(str(job_dir))}")
    _refused(report.refused, shown)
    _skipped(report.skipped, "skipped (training computes or reports these itself):", shown)
    return 0


def _views(crops: int) -> list[str]:
    from ..training.features import views

    return views(True, crops)


def run_step(args, open_library: Callable, shown: Callable[[str], str]) -> int:
    if args.step == "features":
        return run_features(args, open_library, shown)
    job_dir = Path(args.job_dir).expanduser().resolve()
    if args.step == "plan":
        from .coordinator import plan

        lib = open_library(args)
        try:
            made = plan(lib, _folders(lib, args.paths), job_dir)
        finally:
            lib.close()
        print(f"planned: {made.total} photos to embed, in {job_dir}")
        return 0
    if args.step == "ingest":
        lib = open_library(args)
        try:
            return _ingest(lib, job_dir, args.quiet, shown, partial=args.partial)
        finally:
            lib.close()
    from . import require_ray
    from .submit import parse_target, submit, wait

    target = parse_target(args.cluster)
    require_ray()
    if target.local_cpus is not None:
        if args.step == "wait":
            from . import ClusterError

            raise ClusterError("a local:N Ray lives only as long as the command that started "
                               "it: `chikaku cluster submit --cluster local:N` waits itself")
        _run_job(args.cluster, job_dir, args.quiet)
        return 0
    if args.step == "submit":
        print(submit(target.address, job_dir))
        return 0
    show, close = _bar(args.quiet, "embedding on the cluster")
    try:
        wait(target.address, job_dir, show)
    finally:
        close()
    return 0
