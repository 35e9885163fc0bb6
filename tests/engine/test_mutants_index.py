"""The saved index is used only when its stamp describes it and the catalog: a stamp edited to
another count or other ids means a rebuild, the catalog's own ids mean it loads, a damaged file
is reported in the log, and saving makes the folders it needs.

Written against the mutants tests/bench/mutation.py found surviving in engine/index.py."""

from __future__ import annotations

import json
import logging

import numpy as np

from engine.index import VectorIndex, file_name, ids_digest


def _saved(folder) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.array([3, 5, 8, 13, 21, 34], dtype=np.int64)
    idx = VectorIndex.build(8, "v1", ids, vecs, use_gpu=False)
    idx.save(folder, generation=7, library="lib-a")
    return vecs, ids


def _load(folder, **kw):
    return VectorIndex.load(folder, "v1", 8, 7, use_gpu=False, library="lib-a", **kw)


def _edit_stamp(folder, **fields) -> None:
    stamp = folder / (file_name("v1") + ".json")
    data = json.loads(stamp.read_text())
    data.update(fields)
    stamp.write_text(json.dumps(data))


def test_the_ids_checksum_is_about_the_set_of_ids():
    assert ids_digest(np.array([1, 2, 3])) == ids_digest(np.array([3, 1, 2]))
    assert ids_digest(np.array([1, 2, 3])) != ids_digest(np.array([1, 2, 4]))
    assert ids_digest(np.array([1, 2])) != ids_digest(np.array([], dtype=np.int64))


def test_saving_makes_the_folders_it_needs_and_the_catalogs_own_ids_load(tmp_path):
    folder = tmp_path / "library" / "index" / "deep"
    vecs, ids = _saved(folder)
    got = _load(folder, ids=ids_digest(ids[::-1]))
    assert got is not None
    assert [int(got.search(v, 1)[1][0]) for v in vecs] == ids.tolist()  # each finds itself
    assert _load(folder, ids=ids_digest(ids[:-1])) is None  # the catalog has lost a photo


def test_a_stamp_that_does_not_describe_the_file_means_a_rebuild(tmp_path):
    _saved(tmp_path)
    assert _load(tmp_path) is not None
    _edit_stamp(tmp_path, count=5)
    assert _load(tmp_path) is None
    _saved(tmp_path)
    _edit_stamp(tmp_path, ids=ids_digest(np.array([3, 5, 8])))
    assert _load(tmp_path) is None


def test_a_damaged_index_file_is_reported_in_the_log_by_model_version(tmp_path, caplog):
    _saved(tmp_path)
    data = tmp_path / (file_name("v1") + ".faiss")
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="engine.index"):
        assert _load(tmp_path) is None
    assert [r.getMessage() for r in caplog.records] == [
        "the index file for v1 is damaged: rebuilt from the catalog"]
