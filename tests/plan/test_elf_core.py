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


# -- word size and byte order: ELF32/ELF64, little- and big-endian --------------------------

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

COMBOS = [(32, "little"), (32, "big"), (64, "little"), (64, "big")]


def test_big_endian_elf64_for_s390x_read_by_pyelftools():
    spec = CoreHeaderSpec(elf_class=64, machine=22, notes=((0x7FC1D000, 0x2A0), (0x7FFDE000, 0x1000)),
                          ram=(Range(0, 0x10000000), Range(0x20000000, 0x80000000)), page_offset=0,
                          kernel_text=KernelTextMap(vaddr=0x100000, paddr=0x100000, size=0x1400000),
                          byteorder="big")
    data = build_elf_core_header(spec)
    elf = parse(data)
    assert not elf.little_endian and elf.elfclass == 64
    assert elf.header.e_machine == "EM_S390" and elf.header.e_type == "ET_CORE" and elf.header.e_phoff == 64
    assert data[:6] == b"\x7fELF\x02\x02" and data[0x12:0x14] == b"\x00\x16"     # e_machine 22, big-endian
    segs = [s.header for s in elf.iter_segments()]
    assert [(s.p_type, s.p_offset, s.p_paddr, s.p_filesz) for s in segs[:2]] == \
        [("PT_NOTE", 0x7FC1D000, 0x7FC1D000, 0x2A0), ("PT_NOTE", 0x7FFDE000, 0x7FFDE000, 0x1000)]
    assert [(s.p_vaddr, s.p_paddr, s.p_memsz, s.p_flags) for s in segs[2:]] == [
        (0x100000, 0x100000, 0x1400000, 7), (0, 0, 0x10000000, 7), (0x20000000, 0x20000000, 0x60000000, 7)]


def test_big_endian_elf32_read_by_pyelftools():
    spec = CoreHeaderSpec(elf_class=32, machine=20, notes=((0x1000, 100),), ram=(Range(0x100000, 0x1000000),),
                          page_offset=0xC0000000, byteorder="big")
    elf = parse(build_elf_core_header(spec))
    assert not elf.little_endian and elf.elfclass == 32 and elf.header.e_machine == "EM_PPC"
    load = [s.header for s in elf.iter_segments()][1]
    assert (load.p_vaddr, load.p_paddr, load.p_offset, load.p_memsz) == (0xC0100000, 0x100000, 0x100000, 0xF00000)


def test_byte_order_must_be_named():
    with pytest.raises(ValueError, match="byte order"):
        build_elf_core_header(CoreHeaderSpec(elf_class=64, machine=62, notes=(), ram=(), page_offset=None,
                                             byteorder="native"))


@st.composite
def core_specs(draw, bits: int, byteorder: str):
    top = 1 << min(bits, 48)
    starts = sorted(draw(st.sets(st.integers(0, top // 4096 - 2).map(lambda n: n * 4096), min_size=1, max_size=12)))
    ram = tuple(Range(a, min(b, a + draw(st.integers(1, 1 << 20)) * 16)) for a, b in zip(starts, starts[1:] + [top]))
    notes = tuple(draw(st.lists(st.tuples(st.integers(0, (1 << bits) - 1), st.integers(0, (1 << 32) - 1)),
                                max_size=4)))
    text = draw(st.none() | st.builds(KernelTextMap, st.integers(0, (1 << bits) - 1), st.integers(0, top - 1),
                                      st.integers(0, 1 << 30)))
    backup = Backup(src=ram[0], dst=draw(st.integers(0, top - 1))) if draw(st.booleans()) else None
    page_offset = draw(st.none() | st.just(0) | st.integers(0, (1 << bits) - 1))
    lowmem = draw(st.none() | st.integers(0, top)) if bits == 32 else None
    return CoreHeaderSpec(elf_class=bits, machine=draw(st.sampled_from([3, 22, 62, 183])), notes=notes, ram=ram,
                          page_offset=page_offset, kernel_text=text, backup=backup, lowmem_limit=lowmem,
                          byteorder=byteorder)


def expected_phdrs(spec: CoreHeaderSpec) -> list[dict]:
    """The program headers the module doc describes, computed from the spec alone."""
    mask = (1 << spec.elf_class) - 1
    out = [dict(p_type=4, p_flags=0, p_offset=a, p_vaddr=0, p_paddr=a, p_filesz=n, p_memsz=n, p_align=0)
           for a, n in spec.notes]
    if spec.kernel_text:
        t = spec.kernel_text
        out.append(dict(p_type=1, p_flags=7, p_offset=t.paddr, p_vaddr=t.vaddr, p_paddr=t.paddr, p_filesz=t.size,
                        p_memsz=t.size, p_align=0))
    for r in spec.ram:
        if spec.page_offset is None:
            vaddr = 0
        elif spec.lowmem_limit is not None and r.end > spec.lowmem_limit:
            vaddr = mask
        else:
            vaddr = (spec.page_offset + r.start) & mask
        offset = spec.backup.dst if spec.backup and r == spec.backup.src else r.start
        out.append(dict(p_type=1, p_flags=7, p_offset=offset, p_vaddr=vaddr, p_paddr=r.start, p_filesz=r.size,
                        p_memsz=r.size, p_align=0))
    return out


@pytest.mark.parametrize("bits, byteorder", COMBOS)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_generated_headers_match_the_construct_definition_and_pyelftools(bits, byteorder, data):
    """The writer packs program headers with struct (fast); each must be the bytes the
    construct definition builds for the expected values, and pyelftools must read them."""
    from kexec_py.structs.elf import layouts
    spec = data.draw(core_specs(bits, byteorder))
    out = build_elf_core_header(spec)
    lay = layouts(bits, byteorder)
    ehdr = lay.ehdr.parse(out[:lay.ehdr.sizeof()])
    assert (ehdr.e_ident.ei_class, ehdr.e_ident.ei_data) == (1 if bits == 32 else 2, 1 if byteorder == "little" else 2)
    assert (ehdr.e_type, ehdr.e_machine, ehdr.e_phoff, ehdr.e_phentsize) == \
        (4, spec.machine, lay.ehdr.sizeof(), lay.phdr.sizeof())
    expected = expected_phdrs(spec)
    assert ehdr.e_phnum == len(expected) and len(out) % spec.align == 0
    size = lay.phdr.sizeof()
    for i, want in enumerate(expected):
        at = ehdr.e_phoff + i * size
        assert out[at:at + size] == lay.phdr.build(want)
    assert not any(out[ehdr.e_phoff + len(expected) * size:])
    elf = parse(out)
    assert elf.little_endian == (byteorder == "little") and elf.elfclass == bits
    got = [(s.header.p_offset, s.header.p_vaddr, s.header.p_paddr, s.header.p_memsz) for s in elf.iter_segments()]
    assert got == [(p["p_offset"], p["p_vaddr"], p["p_paddr"], p["p_memsz"]) for p in expected]
