"""Mutation testing of the core engine modules with mutmut (not part of CI).

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python tests/bench/mutation.py                 # every module below, in this order
    .venv/bin/python tests/bench/mutation.py decide query   # some of them

Each module is mutated in a fresh copy of engine/ and tests/ under a scratch folder (never in
the working tree, where other test runs may be importing the engine), with only its own fast
tests, and only the functions named below. Per module it prints the mutants, how many the
tests killed, how many survived and the score (killed / mutants; a mutant no test reaches
counts as surviving), then every survivor with its diff. Exit status 1 if any survived.

Options: ``--children N`` worker processes (default 2), ``--work DIR`` the scratch folder
(default: a folder in the system's temporary directory, reused so a rerun only retests what
changed), ``--fresh`` to start that folder over.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT.parent / "shared" / "datasets" / "flickr8k-1k"


@dataclass(frozen=True)
class Module:
    name: str
    source: str  # the file mutated
    functions: tuple[str, ...]  # mutmut's names for the functions mutated, without the module
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()


# Most important first: a run stopped early still has them.
MODULES = (
    Module("decide", "engine/training/decide.py", ("x_photo_scores", "x_judge"),
           ("tests/engine/test_decide.py", "tests/engine/test_mutants_decide.py"),
           # the slow ones train models: the selection test and the meaningless-captions rule
           ("-k", "not meaningless and not state_kept")),
    Module("evaluate", "engine/evaluate.py", ("x_ranks", "x_recalls"),
           ("tests/engine/test_evaluate.py", "tests/engine/test_mutants_evaluate.py")),
    Module("loss", "engine/training/loss.py",
           ("xǁLogitScaleǁ*", "x_clip_loss", "x_gather_with_grad", "x_sharded_clip_loss",
            "xǁ_GatherWithGradǁ*"),
           ("tests/engine/test_loss.py", "tests/engine/test_mutants_loss.py")),
    Module("query", "engine/query.py", ("x__split", "x_parse_query", "x__term"),
           ("tests/engine/test_query_words.py", "tests/engine/test_mutants_query.py")),
    Module("changes", "engine/watching/changes.py", ("x_growing_files", "xǁChangeBatchǁ*"),
           ("tests/engine/test_debounce.py", "tests/engine/test_debounce_folders.py",
            "tests/engine/test_mutants_changes.py"),
           # the real-time watcher tests: seconds per mutant, and a hang for some
           ("-k", "not still_being_written and not copy_still_going_on")),
    Module("indexer", "engine/indexer.py", ("xǁIndexerǁ_diff", "xǁIndexerǁ_resolve_moves"),
           ("tests/engine/test_incremental.py", "tests/engine/test_library.py",
            "tests/engine/test_never_lose.py", "tests/engine/test_mutants_indexer.py"),
           ("-k", "not control and not coco and not csv")),  # caption imports: not the diff
    Module("index", "engine/index.py",
           ("xǁVectorIndexǁsave", "xǁVectorIndexǁload", "x_ids_digest", "x__file_digest"),
           ("tests/engine/test_index.py", "tests/engine/test_index_trust.py",
            "tests/engine/test_library.py", "tests/engine/test_mutants_index.py")),
)

# mutmut's exit codes for a mutant the tests caught: a failing test, pytest's internal error, a
# timeout (the mutant looped), a crash (faiss handed None)
KILLED = {1, 3, 36, 24, -24, 152, 255, -11}


def prepare(module: Module, work: Path, fresh: bool) -> Path:
    """A copy of the project holding just what the module's tests need, and its mutmut
    settings. The mutants folder inside it is kept between runs unless ``fresh``."""
    tree = work / module.name
    if fresh and tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True, exist_ok=True)
    for name in ("engine", "tests", "resources"):
        if (tree / name).exists():
            shutil.rmtree(tree / name)
        shutil.copytree(ROOT / name, tree / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", tree / "pyproject.toml")
    lines = ["[mutmut]", "source_paths = engine", f"only_mutate = {module.source}",
             "pytest_add_cli_args_test_selection ="]
    lines += [f"    {t}" for t in module.tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -m", "    not slow"]
    lines += [f"    {a}" for a in module.pytest_args]
    lines += ["use_git_change_detection = false", ""]
    (tree / "setup.cfg").write_text("\n".join(lines))
    return tree


def results(tree: Path, module: Module) -> dict[str, int | None]:
    meta = tree / "mutants" / (module.source + ".meta")
    if not meta.is_file():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    prefix = module.source[:-3].replace("/", ".") + "."
    wanted = [prefix + f + "__mutmut_*" for f in module.functions]
    from fnmatch import fnmatchcase
    return {k: v for k, v in codes.items() if any(fnmatchcase(k, w) for w in wanted)}


def run(module: Module, work: Path, children: int, fresh: bool) -> dict[str, int | None]:
    tree = prepare(module, work, fresh)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", CHIKAKU_TEST_DATASET=os.environ.get(
                   "CHIKAKU_TEST_DATASET", str(DATASET)))
    prefix = module.source[:-3].replace("/", ".") + "."
    names = [prefix + f + "*" for f in module.functions]
    mutmut = Path(sys.executable).with_name("mutmut")
    log = tree / "mutmut.log"
    with open(log, "w") as out:
        subprocess.run([str(mutmut), "run", "--max-children", str(children), *names],
                       cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
    got = results(tree, module)
    if not got:
        print(f"{module.name}: no results; see {log}", file=sys.stderr)
    return got


def diff(tree: Path, module: Module, name: str) -> str:
    """The lines a mutant changes, from the mutated copy mutmut wrote (original and mutant
    functions side by side)."""
    import ast
    import difflib

    source = (tree / "mutants" / module.source).read_text()
    func = name.rsplit(".", 1)[1]
    bodies = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in (
                func, func.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"):
            lines = ast.get_source_segment(source, node).splitlines()
            lines[0] = lines[0].replace(node.name, "f", 1)
            bodies["mutant" if node.name == func else "orig"] = lines
    if len(bodies) < 2:
        return "    (source not found)"
    changed = difflib.unified_diff(bodies["orig"], bodies["mutant"], lineterm="", n=0)
    return "\n".join(line for line in changed
                     if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", metavar="MODULE",
                    help=", ".join(m.name for m in MODULES) + " (default: all)")
    ap.add_argument("--children", type=int, default=2)
    ap.add_argument("--work", type=Path,
                    default=Path(tempfile.gettempdir()) / "chikaku-mutation")
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args(argv)
    unknown = set(args.modules) - {m.name for m in MODULES}
    if unknown:
        ap.error(f"unknown module {', '.join(sorted(unknown))}")
    chosen = [m for m in MODULES if not args.modules or m.name in args.modules]
    rows, survivors, codes = [], [], {}
    for module in chosen:
        got = run(module, args.work, args.children, args.fresh)
        codes.update(got)
        killed = sum(1 for v in got.values() if v in KILLED)
        alive = sorted(k for k, v in got.items() if v not in KILLED)
        survivors += [(module, k) for k in alive]
        score = f"{100 * killed / len(got):.1f}%" if got else "-"
        rows.append((module.name, len(got), killed, len(alive), score))
        print(f"{module.name}: {len(got)} mutants, {killed} killed, {len(alive)} survived, "
              f"{score}", flush=True)
    print()
    print(f"| {'module':<9} | mutants | killed | survived | score  |")
    print(f"|{'-' * 11}|---------|--------|----------|--------|")
    for name, total, killed, alive, score in rows:
        print(f"| {name:<9} | {total:>7} | {killed:>6} | {alive:>8} | {score:>6} |")
    if survivors:
        print("\nSurvivors:")
        for module, name in survivors:
            status = "no test reaches it" if codes[name] in (33, 5) else "survived"
            print(f"{name} ({status})\n{diff(args.work / module.name, module, name)}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
