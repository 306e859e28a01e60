"""``ood-bench fetch``: download what a preset needs and the user lacks, with checksums and progress.

:data:`RESOURCES` is the table of everything fetchable: pretrained weights (into the torch hub
cache, ``$TORCH_HOME/hub/checkpoints``, where the methods look for them), the torchvision
datasets (through torchvision's own ``download=True``, which checks MD5s) and the ODIN /
OpenOOD OOD sets (official archives, extracted into the data-root layout that
:mod:`ood_bench.data.torchvision_sets` expects). Weights are checked against the SHA-256 prefix
in their file name (``torch.hub.download_url_to_file``); archives against their published MD5
(``torchvision.datasets.utils.download_and_extract_archive``). The three ODIN archives on
Dropbox have no published checksum: they are listed as such.

:func:`plan` lists, for a run configuration, each needed resource, where it goes and whether it
is already there (``--dry-run`` prints just that); :func:`fetch_missing` downloads the missing
ones. A failed download (e.g. offline) raises one :class:`~ood_bench.utils.errors.UserError`
line naming the URL and the folder to fill by hand. Pretrained models named by Hugging Face
repo id (``lmd.unet=google/ddpm-cifar10-32``, ``dlsr.lfdn=...``) are fetched into the hub cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ood_bench.data import DATASETS, DataContext, load_dataset
from ood_bench.engine.config import RunConfig, build_dataclass
from ood_bench.methods.backbones import BACKBONES, torch_hub_checkpoints
from ood_bench.methods.registry import METHODS
from ood_bench.utils.errors import DatasetNotFoundError, MissingWeightsError, UserError


@dataclass(frozen=True)
class Resource:
    """One fetchable thing.

    Attributes:
        name: the key (a dataset's registry name, a backbone's arch, ``alexnet``).
        kind: ``weights`` (one file into the torch hub cache), ``archive`` (extracted into the
            data root), ``torchvision`` (torchvision's downloader, into the data root).
        url: where it comes from (for ``torchvision``: the main file, for messages).
        checksum: ``sha256:<prefix>``, ``md5:<hex>``, ``torchvision`` (its own MD5s) or ``""`` (none published).
        target: the path, relative to the hub checkpoints folder or the data root, that exists
            once it is there (what the methods and datasets look for).
        size: approximate download size, for the listing.
        extract_to: for archives, the folder under the data root they are extracted into.
    """

    name: str
    kind: str
    url: str
    checksum: str
    target: str
    size: str
    extract_to: str = ""


def _weights(name: str, file: str, url: str, size: str) -> Resource:
    # torchvision and lukemelas name files <name>-<first 8 hex of sha256>.pth
    return Resource(name, "weights", url, f"sha256:{file.rsplit('-', 1)[1].split('.')[0]}", file, size)


RESOURCES: dict[str, Resource] = {r.name: r for r in (
    _weights("tf_efficientnet_b4", BACKBONES["tf_efficientnet_b4"].weights_file,
             BACKBONES["tf_efficientnet_b4"].url, "74 MB"),
    _weights("resnet50", BACKBONES["resnet50"].weights_file, BACKBONES["resnet50"].url, "98 MB"),
    _weights("alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
             "233 MB"),
    Resource("cifar10", "torchvision", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "torchvision",
             "cifar-10-batches-py", "163 MB"),
    Resource("cifar100", "torchvision", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "torchvision",
             "cifar-100-python", "161 MB"),
    Resource("svhn", "torchvision", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "torchvision",
             "svhn/test_32x32.mat", "64 MB test (+182 MB train)"),
    Resource("mnist", "torchvision", "https://ossci-datasets.s3.amazonaws.com/mnist/", "torchvision", "MNIST/raw", "11 MB"),
    Resource("fashionmnist", "torchvision", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "torchvision", "FashionMNIST/raw", "30 MB"),
    Resource("kmnist", "torchvision", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/", "torchvision", "KMNIST/raw", "20 MB"),
    Resource("celeba", "torchvision", "https://drive.google.com/ (torchvision CelebA)", "torchvision",
             "celeba/img_align_celeba", "1.4 GB"),
    Resource("lsun_c", "archive", "https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz?dl=1", "", "LSUN", "17 MB"),
    Resource("lsun_r", "archive", "https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz?dl=1", "",
             "LSUN_resize", "17 MB"),
    Resource("isun", "archive", "https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz?dl=1", "", "iSUN", "18 MB"),
    Resource("dtd", "archive", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
             "md5:fff73e5086ae6bdbea199a49dfb8a4c1", "dtd/images", "625 MB"),
    # the 36,500 official validation images (the papers use random 10k subsets of Places365)
    Resource("places365", "archive", "http://data.csail.mit.edu/places/places365/val_256.tar",
             "md5:e27b17d8d44f4af9a78502beb927f808", "places365/val_256", "2.1 GB", extract_to="places365"),
    Resource("tinyimagenet", "archive", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
             "md5:90528d7ca1a48142e341f4ef8d21d0de", "tiny-imagenet-200/val", "248 MB"),
)}


@dataclass(frozen=True)
class Item:
    """A needed resource and where it goes; ``hub_repo`` (and the files to fetch, ``patterns``)
    for Hugging Face models named by repo id."""

    resource: Resource | None
    dest: Path
    present: bool
    hub_repo: str = ""
    patterns: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.hub_repo or self.resource.name


def _needed(cfg: RunConfig) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Resource names, and Hugging Face repo ids (with their file patterns), the run needs: the
    datasets it names and the weights its methods declare (``OODMethod.required_weights``)."""
    names, repos = [], {}
    for ds in [cfg.id, *cfg.ood]:
        if ds in DATASETS:
            names.append(DATASETS.canonical(ds))
    for m in cfg.methods:
        key = METHODS.canonical(m)
        cls = METHODS.get(key)
        for w in cls.required_weights(build_dataclass(cls.config_cls, cfg.method_options.get(key, {}), key)):
            if w.hub_repo:
                repos[w.hub_repo] = tuple(dict.fromkeys((*repos.get(w.hub_repo, ()), *w.patterns)))
            else:
                names.append(w.name)
    return list(dict.fromkeys(n for n in names if n in RESOURCES)), repos


def _hub_present(repo: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo, local_files_only=True)
        return True
    except Exception:  # not in the local cache (any reason)
        return False


def plan(cfg: RunConfig) -> list[Item]:
    """What ``cfg`` needs, where each piece goes and whether it is already there."""
    root = DataContext(root=Path(cfg.data_root)).root_path
    names, repos = _needed(cfg)
    items = []
    for n in names:
        r = RESOURCES[n]
        base = torch_hub_checkpoints() if r.kind == "weights" else root
        items.append(Item(r, base / r.target, (base / r.target).exists()))
    for repo, patterns in repos.items():
        from huggingface_hub.constants import HF_HUB_CACHE

        items.append(Item(None, Path(HF_HUB_CACHE), _hub_present(repo), hub_repo=repo, patterns=patterns))
    return items


def format_plan(items: list[Item]) -> str:
    """The dry-run listing: one line per needed resource."""
    if not items:
        return "this configuration needs nothing that ood-bench can download"
    lines = []
    for it in items:
        state = "present" if it.present else "MISSING"
        if it.hub_repo:
            lines.append(f"{state:8s} {it.hub_repo:20s} https://huggingface.co/{it.hub_repo} -> Hugging Face hub cache")
            continue
        r = it.resource
        check = r.checksum or "no published checksum"
        lines.append(f"{state:8s} {r.name:20s} {r.size:>10s}  {r.url}  [{check}] -> {it.dest}")
    missing = sum(not it.present for it in items)
    lines.append(f"{missing} of {len(items)} missing" + (": `ood-bench fetch` (without --dry-run) downloads them" if missing else ""))
    return "\n".join(lines)


def fetch_item(item: Item, data_root: Path) -> None:
    """Download one item; raise a one-line :class:`UserError` naming the URL and the folder to fill by hand."""
    if item.hub_repo:
        from ood_bench.methods.pretrained import MODEL_FILES, pretrained_folder

        pretrained_folder(item.hub_repo, "model", item.patterns or MODEL_FILES)
        return
    r = item.resource
    root = DataContext(root=data_root).root_path
    try:
        if r.kind == "weights":
            import torch

            item.dest.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(r.url, str(item.dest), hash_prefix=r.checksum.removeprefix("sha256:"),
                                           progress=True)
        elif r.kind == "archive":
            from torchvision.datasets.utils import download_and_extract_archive

            md5 = r.checksum.removeprefix("md5:") or None
            filename = r.url.rsplit("/", 1)[1].split("?")[0]
            download_and_extract_archive(r.url, str(root / ".downloads"), str(root / r.extract_to), filename, md5,
                                         remove_finished=True)
        else:
            ctx = DataContext(root=root, download=True)
            for split in ("train", "test"):
                load_dataset(r.name, split, ctx)
    except UserError as e:
        raise type(e)(f"fetching {r.name} from {r.url} failed ({e.one_line()})") from None
    except Exception as e:  # URLError, hash mismatch, HTTP errors: the user's network or the source
        error = MissingWeightsError if r.kind == "weights" else DatasetNotFoundError
        where = item.dest.parent if r.kind == "weights" else root / (r.extract_to or r.target.split("/")[0])
        how = "put the file" if r.kind == "weights" else "download and extract it by hand"
        raise error(f"cannot download {r.url} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    f"{how} into {where}") from None


def fetch_missing(cfg: RunConfig, log=print) -> list[Item]:
    """Download every missing resource of ``cfg``; returns what was fetched."""
    done = []
    for item in plan(cfg):
        if item.present:
            continue
        log(f"fetching {item.label} -> {item.dest}")
        fetch_item(item, Path(cfg.data_root))
        done.append(item)
    return done
