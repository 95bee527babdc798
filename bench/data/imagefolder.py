"""ImageNet-format class folders (<split>/<class>/*.JPEG): torchvision's ImageFolder with
its file list scanned once and kept in the cache folder, and the image loader.

Scanning costs about 1 us a file (4-5 s for ImageNet's 1.28M), once per process, rank,
cell and seed without a cache. The list is kept in <cache>/filelists/<hash of the folder's
path>.json with the modification time (ns) of every directory the scan walked: adding,
removing or renaming a file or folder changes its directory's time, so a later process
reuses the list only while every one of those times, the class folders and torchvision's
extension list are as recorded, and scans again otherwise. A directory changed less than
2 s before the scan is not recorded (a later change could fall in the same clock tick).
Editing a file in place does not change the list (its content is read when it is used).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from torchvision import datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

from bench.util.errors import DataError, one_line
from bench.util.fingerprint import text_sha256
from bench.util.io import atomic_write_text

__all__ = ["ImageFiles", "UnreadableImage", "file_list_path", "load_image"]

FORMAT = 1
RACY_S = 2.0  # directories changed this recently are not trusted to stay as scanned


class UnreadableImage(DataError):
    """An image file that does not decode, met while training or scoring.

    In a DataLoader worker torch re-raises an exception as its type built from the worker's
    whole traceback; the last line of that is the original message, which is kept, so
    the CLI still prints one line naming the file.
    """

    def __init__(self, message: str) -> None:
        if "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def load_image(path: str) -> Any:
    """torchvision's default loader (PIL, RGB); UnreadableImage naming a file that is empty,
    truncated or not an image (met when read: decoding ImageNet up front costs an epoch)."""
    try:
        return default_loader(path)
    except Exception as exc:  # PIL raises OSError, ValueError, DecompressionBombError ...
        raise UnreadableImage(f"{path}: unreadable image ({one_line(exc)})") from None


def file_list_path(folder: str | os.PathLike[str], cache_dir: Path) -> Path:
    """Where the file list of `folder` is kept."""
    return cache_dir / "filelists" / f"{text_sha256(str(Path(folder).resolve()), 16)}.json"


class ImageFiles(tvd.ImageFolder):
    """An ImageFolder (load_image) whose file list comes from `cache_dir` when still valid
    (module docstring); cache_dir None: always scanned. `cache_dir` also tells where files
    derived from these images go (bench.data.decoded)."""

    def __init__(self, root: str, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.list_reused = False
        super().__init__(root, loader=load_image)

    def make_dataset(  # type: ignore[override]
        self,
        directory: str,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Any = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        def scan() -> list[tuple[str, int]]:
            return tvd.DatasetFolder.make_dataset(
                directory, class_to_idx, extensions, is_valid_file, allow_empty
            )

        if self.cache_dir is None or is_valid_file is not None or extensions != IMG_EXTENSIONS:
            return scan()
        path = file_list_path(directory, self.cache_dir)
        samples = _read_list(path, directory, class_to_idx)
        self.list_reused = samples is not None
        if samples is None:
            started = time.time_ns()
            samples = scan()
            _write_list(path, directory, class_to_idx, samples, started)
        return samples


def _dir_times(directory: str, classes: dict[str, int]) -> dict[str, int]:
    """mtime_ns of `directory` and of every directory below its class folders (as
    torchvision walks them: following links), keyed by path relative to `directory`."""
    times = {".": os.stat(directory).st_mtime_ns}
    for name in classes:
        top = os.path.join(directory, name)
        for root, _dirs, _files in os.walk(top, followlinks=True):
            times[os.path.relpath(root, directory)] = os.stat(root).st_mtime_ns
    return times


def _read_list(path: Path, directory: str, classes: dict[str, int]) -> list | None:
    """The kept samples if `path` holds a list of this folder that is still valid."""
    try:
        kept = json.loads(path.read_text())
        ok = (
            kept["format"] == FORMAT
            and kept["folder"] == directory
            and kept["extensions"] == list(IMG_EXTENSIONS)
            and kept["classes"] == classes
        )
        if not ok or any(os.stat(os.path.join(directory, d)).st_mtime_ns != t
                         for d, t in kept["dirs"].items()):  # fmt: skip
            return None
        return [(directory + os.sep + rel, int(label)) for rel, label in kept["samples"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, damaged or of another folder: scan again


def _write_list(path: Path, directory: str, classes: dict[str, int], samples: list,
                started_ns: int) -> None:  # fmt: skip
    """Keep the list, unless a directory changed too recently to trust (or no write)."""
    try:
        times = _dir_times(directory, classes)
        if max(times.values()) > started_ns - int(RACY_S * 1e9):
            return
        prefix = directory + os.sep
        rel = [[p[len(prefix) :], label] for p, label in samples if p.startswith(prefix)]
        if len(rel) != len(samples):
            return
        kept = {"format": FORMAT, "folder": directory, "extensions": list(IMG_EXTENSIONS),
                "classes": classes, "dirs": times, "samples": rel}  # fmt: skip
        atomic_write_text(path, json.dumps(kept, separators=(",", ":")))
    except OSError:
        pass  # the list is only a shortcut: an unwritable cache folder just scans each time
