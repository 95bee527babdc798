"""Writers of tiny classification datasets in the real on-disk formats, from real images.

The pictures are the real CIFAR-10, CIFAR-100, ImageNet and Fashion-MNIST samples that the
foolbox wheel ships in foolbox/data (`pip install --no-deps foolbox==3.3.4`; it is never
imported), and for Fashion-MNIST the Debian dataset-fashion-mnist files when installed.
More images per class come from shifts, flips and crops of those pictures, so every label
is the picture's true label. Classes without a real picture are left empty.

Tests import this module as `fixtures` (pytest puts tests/ on sys.path for tests/conftest.py).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

FOOLBOX_VERSION = "3.3.4"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

CIFAR10_CLASSES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())
# CIFAR-100's 20 superclasses with their 5 fine classes each (the fine label index is the
# position in the sorted list of all 100 fine names, as in the real meta file).
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
CIFAR100_CLASSES = tuple(sorted(n for v in CIFAR100_SUPERCLASSES.values() for n in v.split()))
CIFAR100_COARSE = tuple(CIFAR100_SUPERCLASSES)
_FINE_TO_COARSE = {
    fine: CIFAR100_COARSE.index(coarse)
    for coarse, fines in CIFAR100_SUPERCLASSES.items()
    for fine in fines.split()
}
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# Small (dy, dx) shifts, in units of the image's shift step; variant j uses shift j // 2 and
# a horizontal flip when j is odd, so the first variant is the untouched picture.
_SHIFTS = ((0, 0), (1, 1), (-1, -1), (1, -1), (-1, 1), (2, 0), (0, -2), (-2, 2), (2, -2))


# --------------------------------------------------------------------------- real pictures


def _package_dir(name: str) -> Path | None:
    """A package's folder without importing it (foolbox would pull in eagerpy and more)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def foolbox_data_dir() -> Path:
    """foolbox/data, or a RuntimeError telling how to install it."""
    pkg = _package_dir("foolbox")
    if pkg is None or not (pkg / "data").is_dir():
        raise RuntimeError(
            "test images missing: pip install --no-deps "
            f"foolbox=={FOOLBOX_VERSION} (its foolbox/data holds the real sample images)"
        )
    return pkg / "data"


@cache
def real_images(kind: str) -> tuple[tuple[np.ndarray, int], ...]:
    """foolbox's pictures of `kind` (cifar10, cifar100, imagenet, fashionMNIST): (HWC, label).

    The label is the last part of the file name, e.g. cifar10_03_0.png is class 0.
    """
    out = []
    for path in sorted(foolbox_data_dir().iterdir()):
        parts = path.stem.split("_")
        if len(parts) == 3 and parts[0] == kind:
            with Image.open(path) as im:
                mode = "L" if kind == "fashionMNIST" else "RGB"
                out.append((np.asarray(im.convert(mode)), int(parts[2])))
    if not out:
        raise RuntimeError(f"no {kind}_*_<label> images in {foolbox_data_dir()}")
    return tuple(out)


def _by_label(kind: str) -> dict[int, list[np.ndarray]]:
    groups: dict[int, list[np.ndarray]] = {}
    for image, label in real_images(kind):
        groups.setdefault(label, []).append(image)
    return dict(sorted(groups.items()))


def _variant(image: np.ndarray, j: int, step: int) -> np.ndarray:
    """Variant j of a small picture: shifted by whole `step`s (reflect-padded) and maybe flipped."""
    dy, dx = (s * step for s in _SHIFTS[(j // 2) % len(_SHIFTS)])
    h, w = image.shape[:2]
    pad = 2 * step
    widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, widths, mode="reflect")
    out = padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return np.ascontiguousarray(out[:, ::-1] if j % 2 else out)


def _class_images(kind: str, count: int, start: int, step: int) -> list[tuple[np.ndarray, int]]:
    """`count` variants per class with a real picture, interleaved across classes."""
    groups = _by_label(kind)
    items = []
    for j in range(start, start + count):
        for label, sources in groups.items():
            src = sources[j % len(sources)]
            items.append((_variant(src, j // len(sources), step), label))
    return items


# --------------------------------------------------------------------------- CIFAR


def write_cifar(
    root: Path, which: str = "cifar10", *, train_per_class: int = 6, test_per_class: int = 2
) -> Path:
    """cifar-10-batches-py/ or cifar-100-python/ under root, as the official python archives.

    Same pickled dictionaries (keys, uint8 N x 3072 channel-planar rows, label lists,
    file names), protocol 2 like the originals. Returns the batches folder.
    """
    if which not in ("cifar10", "cifar100"):
        raise ValueError(f"which must be cifar10 or cifar100, not {which!r}")
    train = _class_images(which, train_per_class, 0, 1)
    test = _class_images(which, test_per_class, train_per_class, 1)
    names = CIFAR10_CLASSES if which == "cifar10" else CIFAR100_CLASSES

    def batch(items: list[tuple[np.ndarray, int]], label: str, offset: int) -> dict:
        data = np.zeros((len(items), 3072), dtype=np.uint8)
        for i, (image, _) in enumerate(items):
            data[i] = image.transpose(2, 0, 1).reshape(-1)  # HWC -> the archive's CHW rows
        labels = [int(lab) for _, lab in items]
        files = [f"{names[lab]}_s_{offset + i:06d}.png" for i, lab in enumerate(labels)]
        entry: dict = {"batch_label": label, "data": data, "filenames": files}
        if which == "cifar10":
            entry["labels"] = labels
        else:
            entry["fine_labels"] = labels
            entry["coarse_labels"] = [_FINE_TO_COARSE[names[lab]] for lab in labels]
        return entry

    folder = Path(root) / ("cifar-10-batches-py" if which == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, object] = {}
    if which == "cifar10":
        offset = 0
        for k, part in enumerate(np.array_split(np.arange(len(train)), 5), start=1):
            chunk = [train[i] for i in part]
            files[f"data_batch_{k}"] = batch(chunk, f"training batch {k} of 5", offset)
            offset += len(chunk)
        files["test_batch"] = batch(test, "testing batch 1 of 1", offset)
        files["batches.meta"] = {
            "num_cases_per_batch": -(-len(train) // 5),
            "label_names": list(names),
            "num_vis": 3072,
        }
    else:
        files["train"] = batch(train, "training batch 1 of 1", 0)
        files["test"] = batch(test, "testing batch 1 of 1", len(train))
        files["meta"] = {
            "fine_label_names": list(names),
            "coarse_label_names": list(CIFAR100_COARSE),
        }
    for name, obj in files.items():
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return folder


# --------------------------------------------------------------------------- ImageNet


def imagenet_wnids() -> list[str] | None:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm ships the list), or None."""
    timm = _package_dir("timm")
    path = timm / "data" / "_info" / "imagenet_synsets.txt" if timm else None
    if path is None or not path.is_file():
        return None
    return path.read_text().split()


def _crop_variant(image: np.ndarray, j: int, size: tuple[int, int]) -> Image.Image:
    """Variant j of a large picture: a crop (varying scale, aspect, place), maybe flipped."""
    h, w = image.shape[:2]
    scale = (1.0, 0.8, 0.65, 0.9, 0.72)[j % 5]
    aspect = (1.0, 1.25, 0.8)[j % 3]
    ch = min(h, int(h * scale / aspect**0.5))
    cw = min(w, int(w * scale * aspect**0.5))
    fy, fx = ((0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0))[(j // 2) % 5]
    y, x = int((h - ch) * fy), int((w - cw) * fx)
    crop = Image.fromarray(image[y : y + ch, x : x + cw])
    if j % 2:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Varying output sizes and aspect ratios, like real ImageNet files.
    out_w, out_h = size[0] + 8 * (j % 3), size[1] + 8 * ((j + 1) % 3)
    return crop.resize((out_w, out_h), Image.Resampling.BILINEAR)


def write_imagefolder(
    root: Path,
    *,
    classes: int = 4,
    train_per_class: int = 6,
    val_per_class: int = 2,
    size: tuple[int, int] = (72, 56),
) -> Path:
    """root/{train,val}/<wnid>/*.JPEG from the real ImageNet pictures (first `classes` labels).

    File names follow ImageNet's (n01440764_1.JPEG; ILSVRC2012_val_00000001.JPEG in val after
    the usual sorting into class folders). Returns root.
    """
    groups = _by_label("imagenet")
    if not 1 <= classes <= len(groups):
        raise ValueError(f"classes must be in 1..{len(groups)}")
    wnids = imagenet_wnids()
    order = [label for _, label in real_images("imagenet")]
    labels = list(dict.fromkeys(order))[:classes]  # first distinct labels in file order
    root = Path(root)
    val_id = 0
    for label in labels:
        wnid = wnids[label] if wnids else f"n{label:08d}"
        sources = groups[label]
        for split, start, count in (
            ("train", 0, train_per_class),
            ("val", train_per_class, val_per_class),
        ):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(start, start + count):
                picture = _crop_variant(sources[j % len(sources)], j // len(sources), size)
                if split == "train":
                    name = f"{wnid}_{j + 1}.JPEG"
                else:
                    val_id += 1
                    name = f"ILSVRC2012_val_{val_id:08d}.JPEG"
                picture.save(folder / name, format="JPEG", quality=90)
    return root


# --------------------------------------------------------------------------- Fashion-MNIST


def write_idx(path: Path, array: np.ndarray) -> Path:
    """A gzipped idx file of uint8 data (magic 0x0000080N, big-endian dimensions)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    # mtime=0 keeps the bytes (and the reader's cache key) identical run to run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + array.tobytes())
    return path


def _read_debian(split: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DEBIAN_FASHION_MNIST / f"{split}-images-idx3-ubyte.gz", "rb") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DEBIAN_FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return images, labels


def write_fashion_mnist_idx(
    root: Path, *, train_per_class: int = 6, test_per_class: int = 2, source: str = "auto"
) -> Path:
    """The four {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz files, named as Debian's.

    source "debian" takes the first images of each class from the installed Debian files
    (unchanged), "foolbox" shifts and flips foolbox's 20 real Fashion-MNIST pictures, and
    "auto" uses Debian's when installed. Returns root.
    """
    if source == "auto":
        source = (
            "debian" if (DEBIAN_FASHION_MNIST / FASHION_MNIST_FILES[0]).is_file() else "foolbox"
        )
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        if source == "debian":
            images, labels = _read_debian(split)
            pick = np.sort(
                np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
            )
            images, labels = images[pick], labels[pick]
        elif source == "foolbox":
            start = 0 if split == "train" else train_per_class  # test variants differ
            items = _class_images("fashionMNIST", per_class, start, 1)
            images = np.stack([im for im, _ in items])
            labels = np.array([lab for _, lab in items], dtype=np.uint8)
        else:
            raise ValueError(f"source must be auto, debian or foolbox, not {source!r}")
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root
