"""The running kernel's page size is a fact of the system snapshot, and every
alignment of a kexec_load follows it (Debian's ppc64el kernels and some arm64 ones
use 64 KiB pages; the kernel checks alignment only after freeing a loaded crash kernel)."""

from __future__ import annotations

import mmap
import os
import re
import shutil
import struct

import pytest

from kexec_py.errors import SnapshotError
from kexec_py.system.view import SystemView, auxv_page_size
from tests.conftest import SYSTEMS


def captured() -> list:
    return sorted(p for p in SYSTEMS.iterdir() if (p / "capture.json").exists())


@pytest.mark.parametrize("root", captured(), ids=lambda p: p.name)
def test_captured_fixtures_give_their_kernels_page_size(root):
    """Expected: the PAGESIZE= line of the VMCOREINFO note in the raw kcore bytes."""
    raw = (root / "proc/kcore").read_bytes()
    (expected,) = {int(m) for m in re.findall(rb"\nPAGESIZE=(\d+)\n", raw)}
    assert SystemView(root).page_size == expected


def test_the_live_system():
    assert SystemView("/").page_size == os.sysconf("SC_PAGE_SIZE") == mmap.PAGESIZE


@pytest.mark.parametrize("fmt", ["<QQ", ">QQ", "<II", ">II"])
@pytest.mark.parametrize("size", [4096, 16384, 65536])
def test_auxv_of_any_word_size_and_byte_order(fmt, size):
    vector = b"".join(struct.pack(fmt, *pair) for pair in ((16, 0xBFEBFBFF), (6, size), (17, 100), (0, 0)))
    assert auxv_page_size(vector) == size
    assert auxv_page_size(vector[:struct.calcsize(fmt) * 1]) is None      # cut before AT_PAGESZ


def test_auxv_wins_over_kcore_and_nothing_is_an_error(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SYSTEMS / "arm64-qemu-2cpu", root)
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/auxv").write_bytes(struct.pack("<6Q", 6, 65536, 17, 100, 0, 0))
    assert SystemView(root).page_size == 65536
    (root / "proc/self/auxv").write_bytes(struct.pack("<4Q", 6, 12288, 0, 0))   # not a power of two
    with pytest.raises(SnapshotError, match="AT_PAGESZ .* power-of-two"):
        SystemView(root).page_size
    (root / "proc/self/auxv").unlink()
    (root / "proc/kcore").unlink()
    with pytest.raises(SnapshotError, match="cannot tell the page size"):
        SystemView(root).page_size
