"""/proc/kcore headers: the kernel's own memory maps and VMCOREINFO, for x86_64, i386 and arm64.

The fixtures are the first 64 KiB of /proc/kcore captured from QEMU guests
running Debian's kernels (tests/fixtures/systems/*/proc/kcore).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kexec_py.arch.arm64 import kernel_maps
from kexec_py.arch.i386 import LOWMEM_LIMIT_DEFAULT, lowmem_limit
from kexec_py.errors import SnapshotError
from kexec_py.system.kcore import Kcore, KcoreLoad, kcore_loads, kcore_vmcoreinfo, parse_kcore

SYSTEMS = Path(__file__).resolve().parent.parent / "fixtures" / "systems"


def kcore(system: str) -> bytes:
    return (SYSTEMS / system / "proc" / "kcore").read_bytes()


def note(name: bytes, desc: bytes, n_type: int = 0) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return struct.pack("<III", len(name) + 1, len(desc), n_type) + pad(name + b"\0") + pad(desc)


def elf64(loads: list[tuple[int, int, int]], notes: bytes = b"", *, ident_class: int = 2,
          data: int = 1, phentsize: int = 56) -> bytes:
    """A little ELF64 core file: PT_NOTE (if ``notes``) then one PT_LOAD per (vaddr, paddr, size)."""
    phdrs = ([(4, 0, notes)] if notes else []) + [(1, ld, b"") for ld in loads]
    phoff = 64
    note_off = phoff + len(phdrs) * phentsize
    head = b"\x7fELF" + bytes([ident_class, data, 1]) + bytes(9)
    out = head + struct.pack("<HHIQQQIHHHHHH", 4, 183, 1, 0, phoff, 0, 0, 64, phentsize, len(phdrs), 0, 0, 0)
    for p_type, ld, blob in phdrs:
        if p_type == 4:
            ph = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(blob), 0, 4)
        else:
            vaddr, paddr, size = ld
            ph = struct.pack("<IIQQQQQQ", 1, 7, 0, vaddr, paddr, size, size, 4096)
        out += ph.ljust(phentsize, b"\0")
    return out + notes


def elf32(loads: list[tuple[int, int, int]]) -> bytes:
    head = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    out = head + struct.pack("<HHIIIIIHHHHHH", 4, 3, 1, 0, 52, 0, 0, 52, 32, len(loads), 0, 0, 0)
    for vaddr, paddr, size in loads:
        out += struct.pack("<IIIIIIII", 1, 0, vaddr, paddr, size, size, 7, 4096)
    return out


# -- the captured kernels ------------------------------------------------------------

def test_arm64_kcore_shows_kaslr_text_linear_map_and_vmcoreinfo():
    core = parse_kcore(kcore("arm64-qemu-2cpu"))
    assert core.elf_class == 64 and core.vmcoreinfo["OSRELEASE"] == "6.1.0-50-cloud-arm64"
    voffset = core.number("kimage_voffset")
    text = [ld for ld in core.loads if ld.offset == voffset]
    assert [(t.vaddr, t.paddr) for t in text] == [(0xFFFFA11D5F800000, 0x40200000)]
    assert text[0].vaddr <= core.symbol("_stext") < text[0].vaddr + text[0].size
    assert [(ld.paddr, ld.size) for ld in core.loads if ld.paddr is not None and ld.offset != voffset] == \
        [(0x40000000, 0x60000000)]
    assert sum(ld.paddr is None for ld in core.loads) == 3      # vmalloc, modules, vmemmap


def test_arm64_kernel_maps_from_kcore():
    linear, text = kernel_maps(parse_kcore(kcore("arm64-qemu-2cpu")))
    assert linear == 0xFFFF1FB980000000
    assert (text.vaddr, text.paddr, text.size) == (0xFFFFA11D5F800000, 0x40200000, 0x1AA0000)


def test_arm64_kernel_maps_without_kcore_ram_entries_use_vmcoreinfo():
    core = parse_kcore(kcore("arm64-qemu-2cpu"))
    only_text = Kcore(64, tuple(ld for ld in core.loads if ld.offset == core.number("kimage_voffset")),
                      core.vmcoreinfo)
    linear, _ = kernel_maps(only_text)
    # __va(p) = (p - PHYS_OFFSET) | PAGE_OFFSET: the same offset the RAM entries show
    assert linear == 0xFFFF1FB980000000


@pytest.mark.parametrize("system", ["x86_64-qemu-1cpu", "x86_64-qemu-2cpu"])
def test_x86_64_kcore_direct_map_and_kernel_text(system):
    core = parse_kcore(kcore(system))
    assert core.elf_class == 64 and core.vmcoreinfo["OSRELEASE"].endswith("-cloud-amd64")
    direct = {ld.offset for ld in core.loads if ld.paddr is not None and ld.vaddr < 0xFFFFFFFF80000000}
    assert len(direct) == 1 and 0xFFFF888000000000 <= direct.pop() < 0xFFFFFE0000000000   # KASLR'd PAGE_OFFSET
    text = [ld for ld in core.loads if ld.vaddr >= 0xFFFFFFFF80000000 and ld.paddr is not None]
    assert len(text) == 1 and text[0].vaddr <= core.symbol("_stext") < text[0].vaddr + text[0].size


def test_i386_kcore_is_elf32_and_bounds_lowmem():
    core = parse_kcore(kcore("i386-qemu-1cpu"))
    assert core.elf_class == 32 and core.vmcoreinfo["OSRELEASE"] == "6.1.0-50-686-pae"
    assert KcoreLoad(0xC0000000, 0, 0x36FFE000) in core.loads
    assert any(ld.paddr is None for ld in core.loads)        # 0xffffffff in ELF32
    assert lowmem_limit(kcore("i386-qemu-1cpu")) == 0x36FFE000


def test_tuple_form_keeps_minus_one_for_no_physical_address():
    loads = kcore_loads(kcore("x86_64-qemu-1cpu"))
    assert (0xFFFFFFFFB1000000, 0x48400000, 0x2830000) in loads
    assert any(p == -1 for _, p, _ in loads)
    assert kcore_vmcoreinfo(kcore("x86_64-qemu-1cpu"))["PAGESIZE"] == "4096"


# -- made-up headers -----------------------------------------------------------------

def test_synthetic_elf64_round_trip():
    info = b"OSRELEASE=6.99\nNUMBER(kimage_voffset)=0xffff7fffc8000000\nSYMBOL(_stext)=ffff800008010000\nJUNK\n"
    data = elf64([(0xFFFF800008000000, 0x40000000, 0x200000), (0xFFFF000000000000, (1 << 64) - 1, 0x1000)],
                 note(b"CORE", b"x" * 13) + note(b"VMCOREINFO", info))
    core = parse_kcore(data)
    assert core.loads == (KcoreLoad(0xFFFF800008000000, 0x40000000, 0x200000),
                          KcoreLoad(0xFFFF000000000000, None, 0x1000))
    assert core.vmcoreinfo == {"OSRELEASE": "6.99", "NUMBER(kimage_voffset)": "0xffff7fffc8000000",
                               "SYMBOL(_stext)": "ffff800008010000"}
    assert core.number("kimage_voffset") == 0xFFFF7FFFC8000000 and core.symbol("_stext") == 0xFFFF800008010000
    assert core.number("missing") is None


def test_negative_and_bad_numbers():
    core = Kcore(64, (), {"NUMBER(PHYS_OFFSET)": "-0x1000", "NUMBER(VA_BITS)": "forty"})
    assert core.number("PHYS_OFFSET") == (1 << 64) - 0x1000 and core.number("VA_BITS") is None


def test_larger_program_header_entries_are_stepped_over():
    core = parse_kcore(elf64([(0x1000, 0x1000, 0x1000), (0x5000, 0x2000, 0x1000)], phentsize=64))
    assert [ld.vaddr for ld in core.loads] == [0x1000, 0x5000]


def test_elf32_all_ones_is_no_physical_address():
    core = parse_kcore(elf32([(0xC0000000, 0, 0x1000), (0xF8000000, 0xFFFFFFFF, 0x1000)]))
    assert core.elf_class == 32 and core.loads[1].paddr is None and core.loads[1].offset is None
    assert lowmem_limit(elf32([(0xC0000000, 0, 0x2000000)])) == 0x2000000


@pytest.mark.parametrize("data", [None, b"", b"not an elf file at all" * 4, b"\x7fELF"])
def test_missing_or_foreign_input_is_empty(data):
    assert parse_kcore(data) == Kcore()
    assert kcore_loads(data) == [] and kcore_vmcoreinfo(data) == {}
    assert lowmem_limit(data) == LOWMEM_LIMIT_DEFAULT


@pytest.mark.parametrize("damage, match", [
    (lambda d: d[:60], "truncated ELF header"),
    (lambda d: d[:64 + 56], "beyond"),
    (lambda d: d[:4] + b"\x02\x02" + d[6:], "data encoding 2"),
    (lambda d: d[:4] + b"\x07" + d[5:], "class 7"),
    (lambda d: d[:0x36] + struct.pack("<H", 8) + d[0x38:], "too small"),
])
def test_damaged_headers_are_a_snapshot_error(damage, match):
    good = elf64([(0x1000, 0x1000, 0x1000), (0x5000, 0x2000, 0x1000)])
    with pytest.raises(SnapshotError, match=match):
        parse_kcore(damage(good))
    assert lowmem_limit(damage(good)) == LOWMEM_LIMIT_DEFAULT


def test_every_truncation_of_a_real_header_parses_or_is_a_snapshot_error():
    real = kcore("arm64-qemu-2cpu")
    for n in range(0, 1200, 7):
        try:
            parse_kcore(real[:n])
        except SnapshotError:
            pass


def test_truncated_note_gives_no_vmcoreinfo():
    notes = note(b"VMCOREINFO", b"OSRELEASE=1\n")
    data = elf64([(0x1000, 0x1000, 0x1000)], notes)
    assert parse_kcore(data).vmcoreinfo == {"OSRELEASE": "1"}
    assert parse_kcore(data[:-8]).vmcoreinfo == {}
