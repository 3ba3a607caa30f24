"""A tiny writer for the "newc" cpio format the kernel unpacks as initramfs.

Written in Python so that modes, owners (always root) and device nodes come
out right without needing root privileges or the host's cpio(1).
"""

from __future__ import annotations

import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_MAGIC = b"070701"
_MTIME = 0x60000000  # fixed, so identical inputs give identical images


@dataclass
class _Entry:
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class Archive:
    """An in-memory file tree that serialises to a newc cpio archive.

    Paths are absolute guest paths ("/usr/bin/x"); parent directories are
    created on demand so the kernel never sees a file before its directory.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self._entries

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        path = _norm(path)
        if path in ("", "."):
            return
        self.mkdir(str(PurePosixPath(path).parent), mode)
        self._entries.setdefault(path, _Entry(stat.S_IFDIR | mode))

    def _put(self, path: str, entry: _Entry) -> None:
        path = _norm(path)
        self.mkdir(str(PurePosixPath(path).parent))
        self._entries[path] = entry

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._put(path, _Entry(stat.S_IFREG | mode, data))

    def add_file(self, path: str, src: Path, mode: int | None = None) -> None:
        """Copy a host file's contents (symlinks followed)."""
        if mode is None:
            mode = stat.S_IMODE(os.stat(src).st_mode)
        self.add_bytes(path, Path(src).read_bytes(), mode)

    def add_symlink(self, path: str, target: str) -> None:
        self._put(path, _Entry(stat.S_IFLNK | 0o777, target.encode()))

    def add_chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._put(path, _Entry(stat.S_IFCHR | mode, rdev=(major, minor)))

    def add_tree(self, dest: str, src: Path) -> None:
        """Copy a host directory tree, keeping symlinks as symlinks."""
        src = Path(src)
        for root, dirs, files in os.walk(src):
            rel = Path(root).relative_to(src)
            base = PurePosixPath(dest) / rel.as_posix()
            self.mkdir(str(base))
            for name in sorted(dirs) + sorted(files):
                host = Path(root) / name
                if host.is_symlink():
                    self.add_symlink(str(base / name), os.readlink(host))
                elif host.is_file():
                    self.add_file(str(base / name), host)

    def to_bytes(self) -> bytes:
        out = bytearray()
        # Directories first (sorted, so parents precede children), then the rest.
        order = sorted(self._entries, key=lambda p: (not stat.S_ISDIR(self._entries[p].mode), p))
        for ino, path in enumerate(order, start=1):
            out += _record(ino, path, self._entries[path])
        out += _record(0, "TRAILER!!!", _Entry(0))
        out += b"\0" * (-len(out) % 512)
        return bytes(out)

    def write_gzip(self, dest: Path, level: int = 6) -> int:
        data = gzip.compress(self.to_bytes(), compresslevel=level, mtime=0)
        tmp = Path(str(dest) + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
        return len(data)


def _norm(path: str) -> str:
    return str(PurePosixPath("/") / path).lstrip("/")


def _record(ino: int, name: str, entry: _Entry) -> bytes:
    raw_name = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, _MTIME, len(entry.data),
              0, 0, entry.rdev[0], entry.rdev[1], len(raw_name), 0)
    head = _MAGIC + b"".join(b"%08X" % f for f in fields)
    blob = head + raw_name
    blob += b"\0" * (-len(blob) % 4)
    blob += entry.data + b"\0" * (-len(entry.data) % 4)
    return blob
