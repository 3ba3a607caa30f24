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


def note(name: bytes, desc: bytes, n_type: int = 0, *, order: str = "<") -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return struct.pack(order + "III", len(name) + 1, len(desc), n_type) + pad(name + b"\0") + pad(desc)


# The ELF specification's layouts, packed by hand (independent of kexec_py.structs);
# ``order`` is struct's "<" (ELFDATA2LSB) or ">" (ELFDATA2MSB).

def elf64(loads: list[tuple[int, int, int]], notes: bytes = b"", *, ident_class: int = 2,
          data: int | None = None, phentsize: int = 56, order: str = "<", filesz: int | None = None) -> bytes:
    """A little ELF64 core file: PT_NOTE (if ``notes``) then one PT_LOAD per (vaddr, paddr, size);
    p_filesz is the size too (as in /proc/kcore), or ``filesz``."""
    data = data if data is not None else (1 if order == "<" else 2)
    phdrs = ([(4, 0, notes)] if notes else []) + [(1, ld, b"") for ld in loads]
    phoff = 64
    note_off = phoff + len(phdrs) * phentsize
    head = b"\x7fELF" + bytes([ident_class, data, 1]) + bytes(9)
    out = head + struct.pack(order + "HHIQQQIHHHHHH", 4, 183, 1, 0, phoff, 0, 0, 64, phentsize, len(phdrs), 0, 0, 0)
    for p_type, ld, blob in phdrs:
        if p_type == 4:
            ph = struct.pack(order + "IIQQQQQQ", 4, 0, note_off, 0, 0, len(blob), 0, 4)
        else:
            vaddr, paddr, size = ld
            file_bytes = size if filesz is None else filesz
            ph = struct.pack(order + "IIQQQQQQ", 1, 7, 0, vaddr, paddr, file_bytes, size, 4096)
        out += ph.ljust(phentsize, b"\0")
    return out + notes


def elf32(loads: list[tuple[int, int, int]], notes: bytes = b"", *, order: str = "<",
          filesz: int | None = None) -> bytes:
    phdrs = ([(4, 0, notes)] if notes else []) + [(1, ld, b"") for ld in loads]
    note_off = 52 + 32 * len(phdrs)
    head = b"\x7fELF" + bytes([1, 1 if order == "<" else 2, 1]) + bytes(9)
    out = head + struct.pack(order + "HHIIIIIHHHHHH", 4, 3, 1, 0, 52, 0, 0, 52, 32, len(phdrs), 0, 0, 0)
    for p_type, ld, blob in phdrs:
        if p_type == 4:
            out += struct.pack(order + "IIIIIIII", 4, note_off, 0, 0, len(blob), 0, 0, 4)
        else:
            vaddr, paddr, size = ld
            file_bytes = size if filesz is None else filesz
            out += struct.pack(order + "IIIIIIII", 1, 0, vaddr, paddr, file_bytes, size, 7, 4096)
    return out + notes


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
    (lambda d: d[:4] + b"\x02\x03" + d[6:], "data encoding 3"),
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


# -- big-endian files (s390x, ppc64 big-endian) ---------------------------------------

INFO = b"OSRELEASE=6.99\nNUMBER(kimage_voffset)=0xffff7fffc8000000\nSYMBOL(_stext)=ffff800008010000\n"


@pytest.mark.parametrize("order", ["<", ">"], ids=["LSB", "MSB"])
def test_elf64_either_byte_order(order):
    loads = [(0xFFFF800008000000, 0x40000000, 0x200000), (0x000003D080000000, (1 << 64) - 1, 0x1000),
             (0x0102030405060708, 0x1122334455667788, 0x0A0B0C0D0E0F)]
    notes = note(b"CORE", b"x" * 13, 1, order=order) + note(b"VMCOREINFO", INFO, order=order)
    core = parse_kcore(elf64(loads, notes, order=order))
    assert core.elf_class == 64
    assert core.loads == (KcoreLoad(0xFFFF800008000000, 0x40000000, 0x200000),
                          KcoreLoad(0x000003D080000000, None, 0x1000),
                          KcoreLoad(0x0102030405060708, 0x1122334455667788, 0x0A0B0C0D0E0F))
    assert core.vmcoreinfo["OSRELEASE"] == "6.99" and core.symbol("_stext") == 0xFFFF800008010000


@pytest.mark.parametrize("order", ["<", ">"], ids=["LSB", "MSB"])
def test_elf32_either_byte_order(order):
    notes = note(b"VMCOREINFO", b"OSRELEASE=5.1\n", order=order)
    core = parse_kcore(elf32([(0xC0000000, 0, 0x1000), (0xF8000000, 0xFFFFFFFF, 0x1000),
                              (0xC1020304, 0x01020304, 0x00A0B0C0)], notes, order=order))
    assert core.elf_class == 32
    assert core.loads == (KcoreLoad(0xC0000000, 0, 0x1000), KcoreLoad(0xF8000000, None, 0x1000),
                          KcoreLoad(0xC1020304, 0x01020304, 0x00A0B0C0))
    assert core.vmcoreinfo == {"OSRELEASE": "5.1"}


def byte_swapped(data: bytes) -> bytes:
    """A captured little-endian kcore rewritten big-endian, by hand from the ELF
    specification's layouts: the ELF header, every program header and every note
    header unpacked little-endian and packed again big-endian."""
    out = bytearray(data)
    out[5] = 2                                                  # EI_DATA = ELFDATA2MSB
    is64 = data[4] == 2
    ehdr = "HHI" + ("QQQ" if is64 else "III") + "IHHHHHH"
    phdr = "IIQQQQQQ" if is64 else "IIIIIIII"
    fields = struct.unpack_from("<" + ehdr, data, 16)
    struct.pack_into(">" + ehdr, out, 16, *fields)
    phoff, phentsize, phnum = fields[4], fields[8], fields[9]
    for i in range(phnum):
        at = phoff + i * phentsize
        p = struct.unpack_from("<" + phdr, data, at)
        struct.pack_into(">" + phdr, out, at, *p)
        if p[0] == 4:                                           # PT_NOTE: swap each note's header
            offset, filesz = (p[2], p[5]) if is64 else (p[1], p[4])
            pos = offset
            while pos + 12 <= offset + filesz:
                namesz, descsz, n_type = struct.unpack_from("<III", data, pos)
                struct.pack_into(">III", out, pos, namesz, descsz, n_type)
                pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return bytes(out)


@pytest.mark.parametrize("system", ["x86_64-qemu-2cpu", "arm64-qemu-2cpu", "i386-qemu-1cpu"])
def test_captured_kcorebyte_swapped_reads_the_same(system):
    import io

    from elftools.elf.elffile import ELFFile
    data = kcore(system)
    swapped = byte_swapped(data)
    # what pyelftools reads in the original (not our reader) is what ours must read in the swap
    elf = ELFFile(io.BytesIO(data))
    ones = (1 << elf.elfclass) - 1
    expected = tuple(KcoreLoad(s.header.p_vaddr, None if s.header.p_paddr == ones else s.header.p_paddr,
                               s.header.p_memsz) for s in elf.iter_segments() if s.header.p_type == "PT_LOAD")
    info = next(n.n_desc for s in elf.iter_segments() if s.header.p_type == "PT_NOTE"
                for n in s.iter_notes() if n.n_name == "VMCOREINFO")
    assert ELFFile(io.BytesIO(swapped)).little_endian is False
    core = parse_kcore(swapped)
    assert core.elf_class == elf.elfclass and core.loads == expected and len(expected) >= 2
    text = info.decode() if isinstance(info, bytes) else info
    assert core.vmcoreinfo == dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert "OSRELEASE" in core.vmcoreinfo


@pytest.mark.parametrize("bits, order", [(32, "<"), (32, ">"), (64, "<"), (64, ">")])
def test_generated_headers_in_every_word_size_and_byte_order(bits, order):
    """The reader unpacks program headers with the struct form of the construct
    definition; here against headers packed by hand from the ELF specification."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    word = st.integers(0, (1 << bits) - 1)

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(loads=st.lists(st.tuples(word, word | st.just((1 << bits) - 1), word), max_size=40),
           info=st.dictionaries(st.from_regex(r"[A-Z_()a-z0-9.]{1,20}", fullmatch=True),
                                st.from_regex(r"[0-9a-fx]{1,16}", fullmatch=True), max_size=5))
    def check(loads, info):
        text = "".join(f"{k}={v}\n" for k, v in info.items()).encode()
        notes = note(b"CORE", b"\x01" * 7, 1, order=order) + note(b"VMCOREINFO", text, order=order)
        data = (elf64 if bits == 64 else elf32)(loads, notes, order=order, filesz=0x5A5A)     # the size is p_memsz
        core = parse_kcore(data)
        ones = (1 << bits) - 1
        assert core.elf_class == bits
        assert core.loads == tuple(KcoreLoad(v, None if p == ones else p, n) for v, p, n in loads)
        assert core.vmcoreinfo == info

    check()
