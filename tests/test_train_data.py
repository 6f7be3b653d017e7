"""Datasets for training: embedded digits, .npz, image folders; the seeded split; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.errors import CosearchError
from cosearch.train.data import check_spec, load_raw, prepare_data, split



def test_split_is_seeded_stratified_and_disjoint():
    y = np.repeat(np.arange(5), 40)
    a, b, c = split(y, seed=3), split(y, seed=3), split(y, seed=4)
    for x, z in ((a.train, b.train), (a.val, b.val), (a.heldout, b.heldout)):
        assert np.array_equal(x, z)
    assert not np.array_equal(a.heldout, c.heldout)
    allidx = np.concatenate([a.train, a.val, a.heldout])
    assert len(np.unique(allidx)) == len(y) == len(allidx)
    assert np.bincount(y[a.heldout]).tolist() == [6] * 5  # 15 % of 40 per class
    assert a.config()["heldout_digest"] == b.config()["heldout_digest"] != c.config()["heldout_digest"]


def test_digits_resized_replicated_and_cached():
    d = prepare_data("digits", (1, 3, 16, 16), 10, seed=0, limit=200)
    assert tuple(d.x_train.shape[1:]) == (3, 16, 16)
    assert len(d.x_train) + len(d.x_val) + len(d.x_heldout) == 200
    assert sorted(set(d.y_train.tolist())) == list(range(10))
    assert np.allclose(d.x_train[:, 0].numpy(), d.x_train[:, 2].numpy())  # grey replicated
    assert abs(float(d.x_train.mean())) < 1e-4  # standardised on the train split
    assert prepare_data("digits", (3, 16, 16), 10, seed=0, limit=200) is d  # cached
    cfg = d.config()
    assert cfg["split"]["seed"] == 0 and cfg["source"]["limit"] == 200 and cfg["dataset"] == "digits"
    d2 = prepare_data("digits", (3, 16, 16), 10, seed=1, limit=200)
    assert d2.fingerprint() != d.fingerprint()


def test_npz_layouts_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 12, 12, 3), dtype=np.uint8)
    y = np.repeat(np.arange(3), 10)
    np.savez(tmp_path / "rgb.npz", x=x, y=y)
    raw = load_raw(str(tmp_path / "rgb.npz"))
    assert raw.x.shape == (30, 3, 12, 12) and raw.num_classes == 3 and raw.x.max() <= 1.0
    assert np.allclose(raw.x[0, 1], x[0, :, :, 1] / 255.0)
    np.savez(tmp_path / "grey.npz", x=rng.random((30, 10, 10)).astype(np.float32), y=y)
    d = prepare_data(str(tmp_path / "grey.npz"), (3, 8, 8), 10)
    assert tuple(d.x_heldout.shape[1:]) == (3, 8, 8)

    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    raw = load_raw(str(tmp_path / "imgs"), channels=3, size=(8, 8))
    assert raw.x.shape == (12, 3, 8, 8) and raw.y.tolist() == [0] * 6 + [1] * 6
    assert raw.source["classes"] == ["cat", "dog"]


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("not_npz", "is not an .npz"),
    ("garbage_npz", "is not a readable .npz"),
    ("no_y", "lacks y"),
    ("len_mismatch", "holds 10 images but y holds 9 labels"),
    ("too_many_classes", r"12 classes\) but the network has 10 outputs"),
    ("two_channels", "2-channel images but the architecture takes 3 channels"),
    ("float_labels", "integer class labels"),
    ("empty_folder", "no class sub-folders"),
    ("bad_image", "not a readable image"),
])
def test_bad_datasets_one_line(tmp_path, case, needle):
    rng = np.random.default_rng(0)
    x = rng.random((10, 8, 8)).astype(np.float32)
    p = tmp_path / "d.npz"
    if case == "missing":
        p = tmp_path / "nope.npz"
    elif case == "not_npz":
        p = tmp_path / "d.csv"
        p.write_text("1,2\n")
    elif case == "garbage_npz":
        p.write_bytes(b"not a zip")
    elif case == "no_y":
        np.savez(p, x=x)
    elif case == "len_mismatch":
        np.savez(p, x=x, y=np.zeros(9, int))
    elif case == "too_many_classes":
        np.savez(p, x=x, y=np.arange(10) + 2)
    elif case == "two_channels":
        np.savez(p, x=rng.random((10, 2, 8, 8)).astype(np.float32), y=np.arange(10) % 2)
    elif case == "float_labels":
        np.savez(p, x=x, y=np.linspace(0, 1, 10))
    elif case == "empty_folder":
        p = tmp_path / "folder"
        p.mkdir()
    elif case == "bad_image":
        p = tmp_path / "folder"
        (p / "a").mkdir(parents=True)
        (p / "a" / "x.png").write_bytes(b"nope")
    with pytest.raises(CosearchError, match=needle) as ei:
        check_spec(str(p))
        prepare_data(str(p), (3, 8, 8), 10)
    assert "\n" not in str(ei.value)
