"""Removing a folder that a kernel may have written into: `remove_tree(path)`.

Whatever a submission built (a tree thousands of levels deep, tens of thousands of files, links to
anything, folders it made unreadable) must go without fail and touch nothing outside it. So the walk is
iterative (no recursion to exhaust), goes by file descriptors (`dir_fd`, O_NOFOLLOW: a link is removed,
never followed), holds two descriptors at a time whatever the depth, climbs back through `..` only after
checking that it arrives in the folder it came from, and does not cross into another file system. It never
raises: what it could not remove is returned, for the log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | Path) -> list[str]:
    """Remove `path` and everything under it; returns what went wrong ([] when all of it is gone)."""
    path = Path(path)
    try:
        parent = os.open(path.parent, _DIRECTORY)
    except OSError as error:
        return [] if isinstance(error, FileNotFoundError) else [f"cannot open {path.parent}: {error}"]
    try:
        return _remove_below(parent, path)
    finally:
        os.close(parent)


def _open_folder(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIRECTORY, dir_fd=dir_fd)
    except PermissionError:  # a folder the kernel made unreadable (without root): it is the grader's own uid
        os.chmod(name, 0o700, dir_fd=dir_fd)  # scandir said a folder, and nothing runs that could swap it
        return os.open(name, _DIRECTORY, dir_fd=dir_fd)


def _remove_below(parent: int, path: Path) -> list[str]:
    try:
        info = os.lstat(path.name, dir_fd=parent)
    except FileNotFoundError:
        return []
    except OSError as error:
        return [f"cannot read {path}: {error}"]
    if not stat.S_ISDIR(info.st_mode):
        return _unlink(path.name, parent, path)
    problems: list[str] = []
    try:
        current = _open_folder(path.name, parent)
    except OSError as error:
        return [f"cannot open {path}: {error}"]
    device = os.fstat(current).st_dev
    # The folders from `path` down to the current one: (name, (device, inode)), each entered by name from
    # the one before it, and each one's subfolders not yet removed.
    trail = [(path.name, _identity(current))]
    pending = [_clear_files(current, path, problems)]
    while True:
        if pending[-1]:
            name = pending[-1].pop()
            try:
                child = _open_folder(name, current)
            except OSError as error:
                problems.append(f"cannot open {path}/.../{name}: {error}")
                continue
            if os.fstat(child).st_dev != device:  # a file system mounted there: not ours to empty
                os.close(child)
                problems.append(f"not removed: a mount point at {path}/.../{name}")
                continue
            os.close(current)
            current = child
            trail.append((name, _identity(current)))
            pending.append(_clear_files(current, path, problems))
            continue
        name, _ = trail.pop()
        pending.pop()
        if not trail:  # `path` itself is empty now
            os.close(current)
            try:
                os.rmdir(path.name, dir_fd=parent)
            except OSError as error:
                problems.append(f"cannot remove {path}: {error}")
            return problems
        try:
            up = os.open("..", _DIRECTORY, dir_fd=current)
        except OSError as error:
            os.close(current)
            return problems + [f"cannot climb back up in {path}: {error}"]
        os.close(current)
        current = up
        if _identity(current) != trail[-1][1]:  # moved meanwhile: stop rather than remove elsewhere
            os.close(current)
            return problems + [f"stopped: a folder under {path} moved while it was being removed"]
        try:
            os.rmdir(name, dir_fd=current)
        except OSError as error:
            problems.append(f"cannot remove {path}/.../{name}: {error}")


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _clear_files(folder: int, path: Path, problems: list[str]) -> list[str]:
    """Unlink every entry of `folder` that is not a folder (links included); return its subfolders' names."""
    subfolders = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    is_folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_folder = False
                if is_folder:
                    subfolders.append(entry.name)
                else:
                    problems += _unlink(entry.name, folder, path)
    except OSError as error:
        problems.append(f"cannot list a folder under {path}: {error}")
    return subfolders


def _unlink(name: str, dir_fd: int, path: Path) -> list[str]:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        return [f"cannot remove {path}/.../{name}: {error}"]
    return []
