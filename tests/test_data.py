"""Datasets: embedded sets, folders (nested/flat, labels, unreadable files), transforms, data root."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ood_bench.utils.errors import ConfigError, DatasetNotFoundError, UnreadableImageError
from ood_bench.data import DATASETS, DataContext, load_dataset
from ood_bench.data.folder import FolderDataset
from ood_bench.data.loading import make_loader, materialize
from ood_bench.data.transforms import ImageTransform
from helpers import write_images

CTX = DataContext()


def test_digits_split_is_deterministic_disjoint_and_stratified():
    tr, te = load_dataset("digits", "train", CTX), load_dataset("digits", "test", CTX)
    assert len(tr) + len(te) == 1797 and len(te) == 549
    assert tr.fingerprint() == load_dataset("digits", "train", CTX).fingerprint()
    assert np.bincount(te.labels(), minlength=10).min() >= 52  # ~30 % of every class
    train_set = {tr.images[i].tobytes() for i in range(len(tr))}
    overlap = sum(te.images[i].tobytes() in train_set for i in range(len(te)))
    assert overlap <= 2  # load_digits itself holds a few duplicate images


def test_near_ood_split_by_classes():
    a, b = load_dataset("digits04", "test", CTX), load_dataset("digits59", "test", CTX)
    assert set(a.labels()) == {0, 1, 2, 3, 4} and set(b.labels()) == {5, 6, 7, 8, 9}
    assert a.num_classes == 5


@pytest.mark.parametrize("name,size,mode,n", [("textures", 32, "L", 300), ("photos", 32, "RGB", 300),
                                              ("noise", 8, "L", 300), ("faces", 25, "L", 100)])
def test_embedded_sets_have_the_documented_shape(name, size, mode, n):
    ds = load_dataset(name, "test", CTX)
    img, label = ds[0]
    assert len(ds) == n and img.size == (size, size) and img.mode == mode and label == -1
    assert not ds.has_labels


def test_crop_sets_train_and_test_differ():
    tr, te = load_dataset("textures", "train", CTX), load_dataset("textures", "test", CTX)
    assert tr.fingerprint() != te.fingerprint()
    assert not np.array_equal(tr.images, te.images)


def test_faces_has_no_train_split():
    with pytest.raises(ConfigError, match="only a test split"):
        load_dataset("faces", "train", CTX)


def test_unknown_name_suggests_a_close_one():
    with pytest.raises(ConfigError, match="did you mean 'textures'"):
        load_dataset("texture", "test", CTX)


def test_transform_converts_channels_and_size():
    gray = Image.fromarray(np.full((8, 8), 255, np.uint8))
    rgb = Image.fromarray(np.zeros((20, 10, 3), np.uint8))
    t3 = ImageTransform(16, channels=3)(gray)
    assert t3.shape == (3, 16, 16) and torch.allclose(t3, torch.ones_like(t3))
    t1 = ImageTransform(6, channels=1)(rgb)
    assert t1.shape == (1, 6, 6) and float(t1.max()) == 0.0


def test_folder_nested_with_class_subfolders_is_labelled(tmp_path):
    write_images(tmp_path / "set" / "cat", 3)
    write_images(tmp_path / "set" / "dog", 2, ext="jpg")
    ds = FolderDataset(tmp_path / "set")
    assert len(ds) == 5 and ds.num_classes == 2 and list(ds.labels()) == [0, 0, 0, 1, 1]
    assert ds.item_id(3) == "dog/img_000.jpg"


def test_flat_folder_is_unlabelled_and_ids_are_paths(tmp_path):
    write_images(tmp_path / "flat", 4, mode="L")
    ds = load_dataset(str(tmp_path / "flat"), "test", CTX)
    assert not ds.has_labels and ds.item_ids()[0] == "img_000.png"
    assert ds[0][0].mode == "L"


def test_folder_as_id_needs_train_subfolder(tmp_path):
    write_images(tmp_path / "flat", 2)
    with pytest.raises(DatasetNotFoundError, match="needs train/ and test/"):
        load_dataset(str(tmp_path / "flat"), "train", CTX)
    write_images(tmp_path / "both" / "train", 2)
    write_images(tmp_path / "both" / "test", 3)
    assert len(load_dataset(str(tmp_path / "both"), "train", CTX)) == 2
    assert len(load_dataset(str(tmp_path / "both"), "test", CTX)) == 3


def test_unreadable_image_is_named_or_skipped(tmp_path):
    write_images(tmp_path / "f", 3)
    bad = tmp_path / "f" / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UnreadableImageError, match="broken.png"):
        FolderDataset(tmp_path / "f")
    with pytest.warns(UserWarning, match="broken.png"):
        ds = FolderDataset(tmp_path / "f", skip_unreadable=True)
    assert len(ds) == 3


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "nope"), "test", CTX)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no images"):
        load_dataset(str(tmp_path / "empty"), "test", CTX)


@pytest.mark.parametrize("name", ["cifar10", "svhn", "lsun_c", "dtd", "tinyimagenet", "celeba"])
def test_missing_data_root_set_says_where_it_looked(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, "test", DataContext(root=tmp_path))
    msg = e.value.one_line()
    assert str(tmp_path) in msg and "\n" not in msg


def test_imagefolder_style_set_found_under_data_root(tmp_path):
    write_images(tmp_path / "iSUN", 5)
    ds = load_dataset("isun", "test", DataContext(root=tmp_path))
    assert len(ds) == 5 and ds.name == "isun"


def _write_idx(path, arr):
    with gzip.open(path, "wb") as f:
        dims = arr.shape
        f.write(struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + arr.tobytes())


def test_torchvision_mnist_layout_under_data_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    for gz in raw.glob("*.gz"):  # torchvision reads the extracted files
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    ds = load_dataset("mnist", "test", DataContext(root=tmp_path))
    assert len(ds) == 4 and ds.num_classes == 10 and list(ds.labels()) == [0, 1, 2, 3]
    assert ds[0][0].size == (28, 28)


def test_limit_takes_a_seeded_class_stratified_subset_in_dataset_order():
    ds = load_dataset("digits", "test", CTX)
    small = ds.take(20)
    ids = [int(i) for i in small.item_ids()]
    assert len(small) == 20 and ids == sorted(ids) and len(set(ids)) == 20  # dataset order, no repeats
    assert np.bincount(small.labels(), minlength=10).tolist() == [2] * 10  # every class, 2 each
    assert small.labels().tolist() == [ds.label(i) for i in ids] and small[0][1] == ds[ids[0]][1]
    assert small.item_ids() == ds.take(20).item_ids()  # seeded: the same subset every time
    assert small.item_ids() != ds.take(20, seed=1).item_ids()
    assert small.fingerprint() != ds.fingerprint() != ds.take(20, seed=1).fingerprint()
    assert small.subset == {"n": 20, "of": len(ds), "seed": 0, "strategy": "class-stratified"}
    assert ds.take(None) is ds and ds.subset is None


def test_limit_of_an_unlabelled_set_is_a_random_subset():
    ds = load_dataset("noise", "test", CTX)
    small = ds.take(30)
    ids = [int(i) for i in small.item_ids()]
    assert ids == sorted(ids) and ids != list(range(30)) and small.subset["strategy"] == "random"


def test_loader_keeps_dataset_order_and_materialize_is_uint8():
    ds = load_dataset("digits", "test", CTX).take(37)
    idx = torch.cat([i for _, _, i in make_loader(ds, ImageTransform(8, 1), batch_size=10)])  # positions in the subset
    assert idx.tolist() == list(range(37))
    x, y = materialize(ds, ImageTransform(8, 1), batch_size=16)
    assert x.dtype == torch.uint8 and x.shape == (37, 1, 8, 8) and y.tolist() == ds.labels().tolist()


def test_every_registered_dataset_has_a_description():
    for name, spec in DATASETS.items():
        assert spec.description and spec.kind in ("embedded", "data-root"), name
