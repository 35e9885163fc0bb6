"""Caption importers on real and malformed files: what matched, what did not, and why."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from engine import captions
from engine.errors import DatasetError


@pytest.fixture
def lib_with_photos(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    return tiny_lib, photos


def _caps(lib, path):
    return lib.captions(lib.photo_by_path(path).id)


def test_csv_of_the_real_data_set(lib_with_photos, dataset):
    lib, photos = lib_with_photos
    report = captions.import_csv(lib, dataset / "captions.csv")
    assert report.photos_matched == 12 and report.captions_added == 60
    assert len(report.unmatched) == 988  # the data set's other photos are not in this library
    assert report.unmatched[0][1] == "no photo with this name in the library"
    first = sorted(photos.iterdir())[0]
    assert _caps(lib, first)[0].startswith("A child in a pink dress")
    again = captions.import_csv(lib, dataset / "captions.csv")
    assert again.captions_added == 0 and again.duplicates == 60  # never duplicated
    assert lib.captioned_photo_count() == 12


def test_csv_split_keeps_only_the_train_part(lib_with_photos, tmp_path):
    lib, photos = lib_with_photos
    names = sorted(p.name for p in photos.iterdir())[:10]
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("image,caption\n" + "".join(f"{n},photo {n}\n" for n in names))
    report = captions.import_csv(lib, csv_path, split="train")
    assert report.photos_matched == 8


def test_coco_json(lib_with_photos, tmp_path):
    lib, photos = lib_with_photos
    a, b = sorted(photos.iterdir())[:2]
    coco = {"images": [{"id": 1, "file_name": a.name}, {"id": 2, "file_name": "gone.jpg"}],
            "annotations": [{"image_id": 1, "caption": "  a   child\tclimbing stairs "},
                            {"image_id": 2, "caption": "missing"},
                            {"image_id": 9, "caption": "orphan"}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    report = captions.import_coco(lib, path)
    assert report.captions_added == 1 and _caps(lib, a) == ["a child climbing stairs"]
    reasons = dict(report.unmatched)
    assert reasons["gone.jpg"] == "no photo with this name in the library"
    assert "not in the file's images list" in reasons["9"]
    assert _caps(lib, b) == []


def test_sidecar_text_files(lib_with_photos):
    lib, photos = lib_with_photos
    a, b = sorted(photos.iterdir())[:2]
    (photos / (a.name + ".txt")).write_text("grandpa's boat at Lake Biwa\n\nMia's first day\n")
    (photos / (b.stem + ".txt")).write_text("the red slide")
    report = captions.import_sidecars(lib)
    assert report.captions_added == 3
    assert _caps(lib, a) == ["grandpa's boat at Lake Biwa", "Mia's first day"]
    assert _caps(lib, b) == ["the red slide"]


def test_descriptions_inside_photos(tiny_lib, tmp_path, dataset):
    folder = tmp_path / "meta"
    folder.mkdir()
    src = Image.open(sorted((dataset / "images").iterdir())[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x010E] = "Sunset over Lake Biwa"
    exif[0x9C9C] = "Family trip".encode("utf-16-le") + b"\x00\x00"
    src.save(folder / "exif.jpg", exif=exif)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
           b'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">Mia &amp; grandpa on the '
           b'boat</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta>')
    src.save(folder / "xmp.jpg", xmp=xmp)
    camera = Image.Exif()
    camera[0x010E] = "OLYMPUS DIGITAL CAMERA"
    src.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "camera.jpg", exif=camera)
    tiny_lib.add_folders([folder])
    report = captions.import_embedded(tiny_lib)
    assert _caps(tiny_lib, folder / "exif.jpg") == ["Sunset over Lake Biwa", "Family trip"]
    assert _caps(tiny_lib, folder / "xmp.jpg") == ["Mia & grandpa on the boat"]
    assert _caps(tiny_lib, folder / "camera.jpg") == []  # camera boilerplate is not a caption
    assert report.photos_matched == 2


@pytest.mark.parametrize("content, message", [
    ("name,text\na.jpg,hello\n", "header row with the columns image,caption"),
    (b"\xff\xfe\x00garbage\x00", "cannot read"),
])
def test_malformed_csv_is_a_clear_error(lib_with_photos, tmp_path, content, message):
    lib, _ = lib_with_photos
    path = tmp_path / "bad.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasetError, match=message):
        captions.import_csv(lib, path)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read"),
    ('{"images": []}', "not COCO captions JSON"),
    ('[1, 2]', "not COCO captions JSON"),
])
def test_malformed_coco_is_a_clear_error(lib_with_photos, tmp_path, content, message):
    lib, _ = lib_with_photos
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        captions.import_coco(lib, path)
    with pytest.raises(DatasetError, match="cannot read"):
        captions.import_coco(lib, tmp_path / "missing.json")


def test_editing_imported_captions_does_not_duplicate_them(lib_with_photos, dataset):
    lib, photos = lib_with_photos
    captions.import_csv(lib, dataset / "captions.csv")
    first = sorted(photos.iterdir())[0]
    pid = lib.photo_by_path(first).id
    shown = lib.captions(pid)
    lib.set_captions(pid, shown[:4] + ["Mia on the stairs"])  # one removed, one added
    assert lib.captions(pid) == shown[:4] + ["Mia on the stairs"]


def test_import_and_eval_split_a_data_set_the_same_way(tmp_path):
    """`captions import --split train` keeps exactly the photos `chikaku eval --split train`
    scores, even when a row has an empty caption or a name with spaces around it."""
    import csv

    from engine.csvrows import read_image_captions, split_names
    from engine.evaluate import load_dataset

    folder = tmp_path / "set"
    folder.mkdir()
    rows = [(f"{i:02d}.png", f"photo {i}") for i in range(10)]
    rows += [("zz-empty.png", ""), (" 03.png ", "again")]
    for name in {r[0].strip() for r in rows}:
        (folder / name).write_bytes(b"")
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows(rows)
    train = split_names(read_image_captions(folder / "captions.csv"), "train")
    assert train == [f"{i:02d}.png" for i in range(8)]  # the empty-captioned photo counts nowhere
    assert [p.name for p in load_dataset(folder, "train").images] == train
