"""Cluster indexing on a private local Ray (one per module): the catalog it makes is the local
indexer's, vector for vector and skip reason for skip reason, and a job or an ingest killed
midway reruns to exactly that catalog, with no photo missing or twice."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from engine.cluster import ClusterError  # noqa: E402
from engine.cluster.coordinator import finished, ingest, plan  # noqa: E402
from engine.cluster.jobdir import SHARDS, shards  # noqa: E402
from engine.cluster.submit import LocalRay, stop, submit, wait  # noqa: E402
from engine.config import IndexingConfig  # noqa: E402
from engine.library import Library  # noqa: E402
from tests.conftest import TINY_MODEL, dataset_images  # noqa: E402

HOSTILE = {"empty.jpg": "empty", "truncated.jpg": "truncated", "words.jpg": "not an image"}


def make_folder(folder: Path, n: int) -> Path:
    """``n`` photos of the shared data set and three hostile files (an empty file, a JPEG cut
    short, a text file named .jpg)."""
    folder.mkdir(parents=True)
    images = dataset_images()[:n]
    for p in images:
        shutil.copy2(p, folder / p.name)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(images[0].read_bytes()[:3000])
    (folder / "words.jpg").write_bytes(b"these are words, not a picture\n" * 10)
    return folder


def catalog_of(lib: Library) -> dict[str, tuple]:
    """Every photo by path: (status, reason, size, mtime, content hash, width, height, date
    taken, date, vector)."""
    model = lib.model
    out = {}
    with lib.catalog.session() as s:
        from engine.catalog import Photo

        photos = s.query(Photo).all()
        for p in photos:
            vec = lib.catalog.vector_of(p.id, model.version)
            out[p.path] = (p.status, p.reason, p.size, p.mtime_ns, p.content_hash, p.width,
                           p.height, p.taken_at, p.date, None if vec is None else np.array(vec))
        assert len(photos) == len({p.path for p in photos}), "a photo is in the catalog twice"
    return out


def assert_same(cluster: dict, local: dict) -> None:
    assert sorted(cluster) == sorted(local)
    for path, row in local.items():
        got = cluster[path]
        assert got[:-1] == row[:-1], path
        if row[-1] is None:
            assert got[-1] is None, path
        else:
            np.testing.assert_allclose(got[-1], row[-1], atol=1e-5, err_msg=path)


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    with LocalRay(tmp_path_factory.mktemp("ray"), 2) as address:
        yield address


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("cluster") / "photos", 200)


@pytest.fixture(scope="module")
def local(photos, tmp_path_factory) -> dict:
    lib = Library.open(tmp_path_factory.mktemp("local") / "lib", device="cpu",
                       default_model=TINY_MODEL)
    try:
        report = lib.add_folders([photos])
        assert report.embedded == 200 and len(report.skipped) == 3
        return catalog_of(lib)
    finally:
        lib.close()


def open_tiny(path: Path, batch: int = 32) -> Library:
    return Library.open(path, device="cpu", default_model=TINY_MODEL,
                        indexing=IndexingConfig(batch_size=batch))


def test_a_local_ray_given_a_port_in_use_starts_again(tmp_path, monkeypatch):
    """Two of Ray's components given the same port (or a port taken by another program before
    Ray binds it) stop its start; the local Ray is started again on other ports."""
    from engine.cluster import submit as sub

    real, calls = sub._free_ports, []

    def clashing(n: int) -> list[int]:
        calls.append(n)
        ports = real(n)
        return [ports[0]] * n if len(calls) == 1 else ports

    monkeypatch.setattr(sub, "_free_ports", clashing)
    with LocalRay(tmp_path, 1) as address:
        assert sub._client(address).list_jobs() == []
    assert len(calls) == 2


def test_cluster_catalog_is_the_local_one(ray_address, photos, local, tmp_path):
    lib = open_tiny(tmp_path / "lib")
    try:
        made = plan(lib, [photos], tmp_path / "job")
        assert made.total == 203
        submit(ray_address, tmp_path / "job", sys.executable)
        seen = []
        wait(ray_address, tmp_path / "job", lambda done, total: seen.append((done, total)),
             poll=0.2)
        assert seen[-1] == (203, 203)
        # decoding ran in tasks of its own, not inside the embedding actors (which would then
        # decode and embed in turn)
        from engine.cluster.submit import _client, submission

        logs = _client(ray_address).get_job_logs(submission(tmp_path / "job"))
        assert ("TaskPoolMapOperator[MapBatches(decode_batch)] -> "
                "ActorPoolMapOperator[MapBatches(Embed)]") in logs
        report = ingest(lib, tmp_path / "job")
        assert (report.embedded, report.added, report.refused) == (200, 200, {})
        assert report.finish.embedded == 0 and report.finish.removed == 0
        assert_same(catalog_of(lib), local)
        reasons = {Path(p).name: r for p, r in report.skipped.items()}
        for name, words in HOSTILE.items():
            assert words in reasons[name]
        # searchable: the index holds every embedded photo, once
        assert len(lib.index) == 200
        first = dataset_images()[5]
        hits = lib.search(image=str(photos / first.name), k=1)
        assert Path(hits[0].path).name == first.name
        # a second ingest of the same job changes nothing
        again = ingest(lib, tmp_path / "job")
        assert again.shards == 0 and again.embedded == 0
        assert_same(catalog_of(lib), local)
    finally:
        lib.close()


def test_killed_job_and_ingest_rerun_to_the_same_catalog(ray_address, photos, local,
                                                         tmp_path):
    job = tmp_path / "job"
    lib = open_tiny(tmp_path / "lib", batch=8)
    try:
        made = plan(lib, [photos], job)
        submit(ray_address, job, sys.executable)
        end = time.monotonic() + 300
        while not shards(job) and time.monotonic() < end:
            time.sleep(0.05)
        stop(ray_address, job)  # killed midway
        with pytest.raises(ClusterError, match="stopped"):
            wait(ray_address, job, poll=0.2)
        done = finished(job)
        assert 0 < done < made.total, "the job was not stopped midway"
        # a half-written shard, and a shard written twice (a retried task)
        (job / SHARDS / ".part-half.tmp").write_bytes(b"PAR1 cut short")
        first = shards(job)[0].path
        shutil.copy(first, first.with_name("part-000000000000-8-dead.parquet"))
        # the coordinator killed while ingesting: the shards there are, taken alone
        with pytest.raises(ClusterError, match="not finished"):
            ingest(lib, job)
        partial = ingest(lib, job, partial=True)
        assert 0 < partial.embedded < 200
        # the rerun embeds only what no shard holds, then ingests the rest
        submit(ray_address, job, sys.executable)
        wait(ray_address, job, poll=0.2)
        report = ingest(lib, job)
        assert partial.embedded + report.embedded == 200
        assert report.finish.embedded == 0
        assert_same(catalog_of(lib), local)
        assert len(lib.index) == 200
    finally:
        lib.close()


def test_shards_of_another_model_version_are_refused(ray_address, photos, tmp_path):
    """A shard whose rows name another model version is refused and its photos are embedded by
    the finishing pass, so nothing is lost and no vector of another model enters the index."""
    import pyarrow.parquet as pq

    folder = make_folder(tmp_path / "few", 6)
    job = tmp_path / "job"
    lib = open_tiny(tmp_path / "lib")
    try:
        plan(lib, [folder], job)
        submit(ray_address, job, sys.executable)
        wait(ray_address, job, poll=0.2)
        shard = shards(job)[0].path
        table = pq.read_table(shard)
        other = table.set_column(table.schema.get_field_index("model_version"),
                                 "model_version", [["other-model"] * table.num_rows])
        pq.write_table(other, shard)
        report = ingest(lib, job)
        assert "other-model" in report.refused[shard.name]
        assert report.embedded == 0 and report.finish.embedded == 6
        assert len(lib.index) == 6
    finally:
        lib.close()


def test_a_job_where_nothing_finishes_ends_with_a_message(ray_address, tmp_path):
    """A job that cannot make progress (here: allowed no time at all before its first photo)
    ends with what it asked for and what the nodes have, instead of waiting forever; its job
    folder is kept, and a rerun with time to work finishes it."""
    import dataclasses

    from engine.cluster.jobdir import read_plan, write_plan

    folder = make_folder(tmp_path / "few", 6)
    job = tmp_path / "job"
    lib = open_tiny(tmp_path / "lib")
    try:
        made = plan(lib, [folder], job)
        write_plan(job, dataclasses.replace(made, stall_s=0.2))
        submit(ray_address, job, sys.executable)
        with pytest.raises(ClusterError, match="no photo finished for 0.2 s") as e:
            wait(ray_address, job, poll=0.2)
        assert "embedding actor" in str(e.value) and "CPU" in str(e.value)
        write_plan(job, made)
        assert read_plan(job).stall_s == 600
        submit(ray_address, job, sys.executable)
        wait(ray_address, job, poll=0.2)
        assert ingest(lib, job).embedded == 6
    finally:
        lib.close()


def test_training_features_made_on_the_cluster_are_the_local_ones(ray_address, tmp_path):
    """`chikaku cluster features`: the towers' outputs for every view of the captioned photos
    and for their captions, made by the Ray pipeline, are those training computes itself; a
    photo that cannot be read is reported with its reason; a second run makes only what the
    store lacks; and training from the store gives the model training without it gives."""
    import csv

    from engine.cluster.features import build, plan_features
    from engine.config import TrainOptions
    from engine.training.features import FeatureCache, image_stems, text_stems, views
    from engine.training.finetune import captioned_photos
    from engine.training.stems import StemStore
    from tests.conftest import DATASET

    folder = tmp_path / "photos"
    folder.mkdir()
    images = dataset_images()[:14]
    for p in images:
        shutil.copy2(p, folder / p.name)
    captions: dict[str, list[str]] = {}
    with open(DATASET / "captions.csv", newline="") as f:
        for row in csv.DictReader(f):
            captions.setdefault(row["image"], []).append(row["caption"])
    lib = Library.open(tmp_path / "lib", device="cpu")  # the bundled model: locked towers
    try:
        lib.add_folders([folder])
        for p in images[:12]:
            lib.set_captions(lib.photo_by_path(folder / p.name).id, captions[p.name])
        broken = folder / images[11].name
        kept = broken.read_bytes()
        broken.write_bytes(b"not a photo any more\n" * 10)
        job = tmp_path / "job"
        made = plan_features(lib, job, crops=1)
        assert (made.extra["photos"], made.extra["captions"]) == (12, 60)
        assert made.total == 72
        submit(ray_address, job, sys.executable)
        wait(ray_address, job, poll=0.2)
        report = build(lib, job)
        assert (report.photos, report.captions, report.refused) == (11, 60, {})
        with pytest.raises(ClusterError, match="training features, not photos to index"):
            ingest(lib, job)
        assert list(report.skipped) == [str(broken)]
        assert "not" in report.skipped[str(broken)] and "image" in report.skipped[str(broken)]
        broken.write_bytes(kept)

        store = StemStore.open(job / "features")
        data = captioned_photos(lib.catalog)
        cache = FeatureCache(None)
        names = views(True, 1)
        image_stems(lib.model, data, cache, names)
        text_stems(lib.model, [c for caps in data.captions for c in caps], cache)
        for side, first in (("image", "i"), ("text", "t")):
            keys = [k for k in cache.data if k.startswith(first)]
            rows = store.rows(side, keys)
            lacking = [k for k, r in zip(keys, rows, strict=True) if r < 0]
            if side == "image":
                gone = lib.photo_by_path(broken).content_hash
                assert lacking == [f"i{gone}{v}" for v in names]
            else:
                assert lacking == []
            for k, r in zip(keys, rows, strict=True):
                if r >= 0:
                    np.testing.assert_allclose(store.stems[side][r], cache.data[k], atol=1e-4,
                                               err_msg=k)

        # one more captioned photo: the second job makes its stems and the broken photo's only
        lib.set_captions(lib.photo_by_path(folder / images[12].name).id, captions[images[12].name])
        again = plan_features(lib, job, crops=1)
        assert (again.extra["photos"], again.extra["captions"]) == (2, 5)
        submit(ray_address, job, sys.executable)
        wait(ray_address, job, poll=0.2)
        assert build(lib, job).photos == 13

        options = dict(steps=20, batch_size=8, crops=1, seed=1, activate="never")
        stored = lib.train(TrainOptions(features=str(job), **options))
        computed = lib.train(TrainOptions(**options))
        assert stored.after == computed.after and stored.before == computed.before
        assert stored.photos == computed.photos == 7
    finally:
        lib.close()
