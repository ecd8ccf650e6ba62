"""Writing files safely: atomically, with the right mode, backing up what a person edited."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def atomic_write(
    path: Path,
    data: str | bytes,
    mode: int = PUBLIC_MODE,
    owner: tuple[int, int] | None = None,
) -> None:
    """Write a file all at once: a temp file in the same directory, fsync, chmod, rename.

    A reader never sees half a file, and a crash leaves the old file or the new one. The
    mode (and `owner`, a (uid, gid) root can give) is set before the rename, so a secret is
    never readable by others, nor unreadable by its owner, not even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def backup(path: Path, backups_dir: Path) -> Path:
    """Copy a file into backups_dir as `<name>.<UTC timestamp>` and return the copy's path."""
    backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = backups_dir / f"{path.name}.{stamp}"
    counter = 1
    while target.exists():
        target = backups_dir / f"{path.name}.{stamp}.{counter}"
        counter += 1
    shutil.copy2(path, target)
    return target


def is_private(path: Path) -> bool:
    """True when group and others have no access to the file."""
    return (path.stat().st_mode & 0o077) == 0


def tree_size(path: Path) -> int:
    """Bytes in a file, or in every regular file under a directory (symlinks count as
    themselves, never followed); a file that vanishes during the walk is skipped."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except OSError:
            continue
    return total
