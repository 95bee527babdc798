"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

Every writer goes to a temporary file in the target's own directory (so `os.replace` is a
rename within one filesystem, which POSIX makes atomic), fsyncs it, renames it over the
target and fsyncs the directory so the rename itself survives a power cut.

A temporary file is named `.NAME.HOST-PID.XXXXXXXX.tmp` (the writer's host and pid), so a
later process can tell the leftovers of a killed writer (`remove_stale_temps`) from the
file another live process is still writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bench.util.faults import kill_point

__all__ = [
    "append_jsonl",
    "atomic_path",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "json_damage",
    "keep_previous",
    "link_or_copy",
    "pid_alive",
    "read_json",
    "read_jsonl",
    "remove_stale_temps",
]

HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"
# Read once: mkstemp makes 0600 files, and a written file should get the mode open() gives.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _fsync_dir(directory: Path) -> None:
    # Directory fsync makes the rename durable; not every platform/filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path) -> None:
    """fsync the finished temporary file, rename it over `target`, fsync the directory."""
    kill_point(f"write:{target.name}")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path for a writer that needs a file name (h5py, mmengine); it
    replaces `path` only if the block finishes without raising (else it is removed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{HOST}-{os.getpid()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Yield a file whose content replaces `path` only if the block finishes without raising.

    On an exception the temporary file is removed and `path` keeps its old content (or stays
    absent). `mode` is "wb" or "w" (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _dead_writer(name: str) -> bool:
    """Whether temp file `name` was written by a process of this host that no longer runs."""
    parts = name[: -len(".tmp")].rsplit(".", 2)
    host, _, pid = parts[-2].rpartition("-") if len(parts) == 3 else ("", "", "")
    return host == HOST and pid.isdigit() and not pid_alive(int(pid))


def remove_stale_temps(
    directory: str | os.PathLike[str], name: str | None = None, *, any_writer: bool = False
) -> list[Path]:
    """Remove the temporary files a killed writer left in `directory` (only those for
    target `name` when given). Only temps of dead writers on this host, unless
    `any_writer` (the caller knows nobody else writes there: it holds the run lock)."""
    pattern = f".{name}.*.tmp" if name else ".*.tmp"
    removed = []
    for p in Path(directory).glob(pattern):
        if p.is_file() and (any_writer or _dead_writer(p.name)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace `path` with UTF-8 `text`."""
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, sort_keys: bool = True
) -> None:
    """Atomically write `obj` as JSON (NaN/inf refused: they are not JSON)."""
    # Serialise first so an unserialisable object fails before any file is touched.
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically `torch.save` `obj` to `path`."""
    import torch  # local: keeps `bench.util.io` importable without paying for torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Atomically make `target` a hard link to `source` (a copy where links are not
    allowed); `target` is replaced."""
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{HOST}-{os.getpid()}."
    tmp = target.parent / f"{prefix}{os.urandom(4).hex()}.tmp"
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FAT filesystems)
        with atomic_path(target) as t:
            shutil.copyfile(source, t)
        return
    try:
        _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def keep_previous(path: str | os.PathLike[str], previous: str | os.PathLike[str]) -> None:
    """Before `path` is replaced: keep its current version as `previous` (a hard link,
    so no copy is written; nothing when `path` does not exist). No temporary file: a kill
    in between leaves at most no `previous` (a fall-back only), never a stray file."""
    source, target = Path(path), Path(previous)
    if not source.is_file():
        return
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # no hard links here: an atomic copy
        link_or_copy(source, target)


def json_damage(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with JSON file `path` in a few words ("zero bytes", "truncated: not
    JSON at byte 40", "not JSON at byte 3"), None when it parses (or does not exist)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if not data.strip():
        return "zero bytes" if not data else "blank"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text at byte {e.start}"
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        at = len(text[: e.pos].encode("utf-8"))
        return f"{'truncated: ' if not text[e.pos :].strip() else ''}not JSON at byte {at}"
    return None


def append_jsonl(path: str | os.PathLike[str], record: Any) -> None:
    """Append one JSON record as one line, flushed and fsynced.

    An append is not atomic; a crash can leave a torn last line, which `read_jsonl` drops.
    """
    line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(
    path: str | os.PathLike[str], *, where: Callable[[Any], bool] | None = None
) -> list[Any]:
    """Read a JSON-lines file, dropping a torn (unterminated or unparsable) last line."""
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text(encoding="utf-8").split("\n")
    out: list[Any] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the torn tail of an interrupted append
                break
            raise
        if where is None or where(rec):
            out.append(rec)
    return out
