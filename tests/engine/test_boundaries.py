"""The engine stands alone: importing all of it never loads Qt or the app; SQL has one owner."""

import ast
import subprocess
import sys
from pathlib import Path

import engine


def test_engine_imports_neither_qt_nor_app():
    code = (
        "import sys, pkgutil, importlib, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('PySide6', 'app'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


# The catalog owns SQL: its tables and queries (catalog.py), the queries indexing runs over
# them (catalog_photos.py), the named things' tables and queries (catalog_names.py), the
# feedback marks' (catalog_feedback.py) and PostgreSQL's word index (catalog_pg.py); the writer
# lock reads the catalog's URL with SQLAlchemy's parser for PostgreSQL's advisory lock (lock.py).
# Everything else asks them by intent.
SQL_OWNERS = {"catalog.py", "catalog_photos.py", "catalog_names.py", "catalog_feedback.py",
              "catalog_pg.py", "lock.py"}
# ORM classes the facade and the model registry still pass around; none may be added.
ORM_NOT_PRIVATE_YET = {("engine/library.py", "ModelRecord"), ("engine/library.py", "Photo"),
                       ("engine/registry.py", "ModelRecord")}


def _imported_roots(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_only_the_catalog_imports_sqlalchemy():
    root = Path(engine.__file__).parent
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if "sqlalchemy" in set(_imported_roots(p)))
    assert set(importers) == SQL_OWNERS, importers


def _catalog_names(path, package):
    """The names a module imports from engine.catalog."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        base = package[: len(package) - node.level + 1] if node.level else []
        if [*base, *node.module.split(".")] == ["engine", "catalog"]:
            yield from (a.name for a in node.names)


def test_the_orm_classes_stay_inside_the_catalog():
    from engine.catalog import Base

    orm = {m.class_.__name__ for m in Base.registry.mappers} | {"Base"}
    root = Path(engine.__file__).parent.parent
    found = set()
    for top in ("engine", "app"):
        for p in (root / top).rglob("*.py"):
            if p.parent == root / "engine" and p.name in SQL_OWNERS:
                continue
            package = list(p.relative_to(root).parent.parts)
            rel = p.relative_to(root).as_posix()
            found |= {(rel, name) for name in _catalog_names(p, package) if name in orm}
    assert found - ORM_NOT_PRIVATE_YET == set(), sorted(found)
