import io

from elftools.elf.elffile import ELFFile

from kexec_py.plan.elf_core import Backup, CoreHeaderSpec, KernelTextMap, build_elf_core_header
from kexec_py.plan.ranges import Range

SPEC = CoreHeaderSpec(
    elf_class=64, machine=62,
    notes=((0x5FC1D6C0, 436), (0x5FC5D6C0, 436), (0x5FFDE000, 0x1000)),
    ram=(Range(0x1000, 0x9FC00), Range(0x100000, 0x1D000000), Range(0x35000000, 0x5FFE0000)),
    page_offset=0xFFFF888000000000,
    kernel_text=KernelTextMap(vaddr=0xFFFFFFFF9A200000, paddr=0x5A200000, size=0x1C00000),
    backup=Backup(src=Range(0x1000, 0x9FC00), dst=0x34F61000),
)


def parse(data):
    return ELFFile(io.BytesIO(data))


def test_header_is_a_core_file_for_x86_64():
    data = build_elf_core_header(SPEC)
    assert len(data) % 1024 == 0
    elf = parse(data)
    assert elf.header.e_type == "ET_CORE" and elf.header.e_machine == "EM_X86_64"
    assert elf.elfclass == 64 and elf.little_endian


def test_program_headers_in_kexec_tools_order():
    segs = list(parse(build_elf_core_header(SPEC)).iter_segments())
    assert [s.header.p_type for s in segs] == ["PT_NOTE"] * 3 + ["PT_LOAD"] * 4
    notes = [(s.header.p_offset, s.header.p_paddr, s.header.p_filesz, s.header.p_vaddr) for s in segs[:3]]
    assert notes == [(a, a, n, 0) for a, n in SPEC.notes]
    text = segs[3].header
    assert (text.p_vaddr, text.p_paddr, text.p_offset, text.p_memsz) == (0xFFFFFFFF9A200000, 0x5A200000,
                                                                        0x5A200000, 0x1C00000)


def test_ram_loads_use_page_offset_and_backup_copy():
    loads = [s.header for s in parse(build_elf_core_header(SPEC)).iter_segments()][4:]
    low, mid, high = loads
    assert low.p_paddr == 0x1000 and low.p_offset == 0x34F61000      # read from the backup copy
    assert low.p_vaddr == 0xFFFF888000001000
    assert (mid.p_offset, mid.p_paddr, mid.p_filesz, mid.p_memsz) == (0x100000, 0x100000, 0x1CF00000, 0x1CF00000)
    assert high.p_vaddr == 0xFFFF888000000000 + 0x35000000
    assert all(h.p_flags == 7 for h in loads)


def test_elf32_with_lowmem_limit():
    spec = CoreHeaderSpec(elf_class=32, machine=3, notes=((0x1000, 100),),
                          ram=(Range(0x100000, 0x1000000), Range(0x40000000, 0x50000000)),
                          page_offset=0xC0000000, lowmem_limit=0x38000000)
    elf = parse(build_elf_core_header(spec))
    assert elf.elfclass == 32
    loads = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]
    assert loads[0].p_vaddr == 0xC0100000
    assert loads[1].p_vaddr == 0xFFFFFFFF                             # highmem: no linear address


def test_struct_formats_match_the_construct_layouts():
    from kexec_py.structs import elf_core as E
    fields64 = dict(p_type=1, p_flags=7, p_offset=0x1000, p_vaddr=0xFFFF888000001000, p_paddr=0x1000,
                    p_filesz=0x9F000, p_memsz=0x9F000, p_align=0)
    fields32 = dict(fields64, p_vaddr=0xC0001000)
    assert E.PHDR64.pack(*(fields64[k] for k in ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr",
                                                 "p_filesz", "p_memsz", "p_align"))) == E.Elf64_Phdr.build(fields64)
    assert E.PHDR32.pack(*(fields32[k] for k in ("p_type", "p_offset", "p_vaddr", "p_paddr", "p_filesz",
                                                 "p_memsz", "p_flags", "p_align"))) == E.Elf32_Phdr.build(fields32)


def test_many_ranges_fill_the_header_and_too_many_are_refused():
    import pytest

    from kexec_py.errors import SystemStateError
    ram = tuple(Range(0x100000000 + i * 0x200000, 0x100000000 + i * 0x200000 + 0x100000) for i in range(65534 - 3))
    spec = CoreHeaderSpec(elf_class=64, machine=62, notes=SPEC.notes, ram=ram, page_offset=SPEC.page_offset)
    loads = [s.header for s in parse(build_elf_core_header(spec)).iter_segments()]
    assert len(loads) == 65534 and loads[-1].p_paddr == ram[-1].start and loads[-1].p_memsz == 0x100000
    too_many = CoreHeaderSpec(elf_class=64, machine=62, notes=SPEC.notes, ram=ram + (Range(1 << 40, (1 << 40) + 4096),),
                              page_offset=SPEC.page_offset)
    with pytest.raises(SystemStateError, match="65534"):
        build_elf_core_header(too_many)
