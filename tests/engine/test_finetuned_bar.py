"""What a person gets from the default model after `chikaku train` on flickr8k-1k's train photos:
one whole run through the command line (index, import the captions, train with default options,
eval on the test photos, which training never sees). Slow: a few minutes on two CPU cores."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.cli import main as cli
from engine.csvrows import read_image_captions, split_names

pytestmark = pytest.mark.slow


def test_train_with_default_options_then_the_test_split_meets_the_fine_tuned_bar(
        dataset, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in split_names(read_image_captions(dataset / "captions.csv"), "train"):
        shutil.copy2(dataset / "images" / name, photos / name)
    lib = ["--library", str(tmp_path / "lib")]
    assert cli(["index", str(photos), "--quiet", *lib]) == 0
    assert cli(["captions", "import", "--csv", str(dataset / "captions.csv"), "--split",
                "train", *lib]) == 0
    assert cli(["train", *lib]) == 0
    capsys.readouterr()
    assert cli(["eval", str(dataset), "--split", "test", "--json", *lib]) == 0
    result = json.loads(capsys.readouterr().out)
    six = {k: result[k] for k in ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10")}
    with capsys.disabled():
        print(f"\nfine-tuned, test split, {result['model']}: {six}")
    assert (result["photos"], result["captions"]) == (200, 1000)
    assert result["t2i_r10"] >= 77.0, result
