"""The construct definitions in kexec_py.structs against the specifications' offsets,
and every fast path (struct forms, single-field reads) against those definitions.

Expected offsets are the documents' own (ELF: the System V ABI; PE: Microsoft's PE
format; the zero page: Documentation/arch/x86/boot.rst and zero-page.rst; arm64:
booting.rst; zboot: zboot-header.S). Reference byte layouts below are packed by
hand with ``struct`` from those documents, independently of kexec_py.structs.
"""

from __future__ import annotations

import struct

import pytest
from construct import ConstError, Int8ul, Int16ub, Int32ul, Int64ul, StreamError, Struct, VarInt
from hypothesis import HealthCheck, given, settings, strategies as st

from kexec_py.structs import arm64 as A, bootparam as BP, elf as E, pe as PE, zboot as Z
from kexec_py.structs.elf_core import PHDR32, PHDR64, phdr_struct
from kexec_py.structs.layout import fast_struct, offset_of, read_field

GENERATED = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
COMBOS = [(32, "little"), (32, "big"), (64, "little"), (64, "big")]
U32 = st.integers(0, (1 << 32) - 1)


def words(bits: int):
    return st.integers(0, (1 << bits) - 1)


# -- offsets: the definitions say what the documents say ------------------------------------

@pytest.mark.parametrize("bits, offsets", [
    (32, dict(e_type=0x10, e_machine=0x12, e_entry=0x18, e_phoff=0x1C, e_flags=0x24, e_phentsize=0x2A,
              e_phnum=0x2C, e_shstrndx=0x32)),
    (64, dict(e_type=0x10, e_machine=0x12, e_entry=0x18, e_phoff=0x20, e_flags=0x30, e_phentsize=0x36,
              e_phnum=0x38, e_shstrndx=0x3E)),
])
def test_elf_header_offsets(bits, offsets):
    for byteorder in ("little", "big"):
        ehdr = E.layouts(bits, byteorder).ehdr
        assert {name: offset_of(ehdr, name) for name in offsets} == offsets
    assert offset_of(E.e_ident, "ei_class") == 4 and offset_of(E.e_ident, "ei_data") == 5


def test_program_header_offsets():
    p32, p64 = E.layouts(32).phdr, E.layouts(64).phdr
    assert [offset_of(p32, n) for n in ("p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_flags")] == \
        [4, 8, 12, 16, 20, 24]
    assert [offset_of(p64, n) for n in ("p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz")] == \
        [4, 8, 16, 24, 32, 40]
    assert E.layouts(64, "big").nhdr.sizeof() == 12


def test_zero_page_offsets():
    assert offset_of(BP.boot_params, "acpi_rsdp_addr") == 0x070
    assert offset_of(BP.boot_params, "e820_entries") == 0x1E8
    assert offset_of(BP.boot_params, "hdr") == BP.SETUP_HEADER_OFFSET
    assert offset_of(BP.boot_params, "e820_table") == 0x2D0
    hdr = {n: BP.SETUP_HEADER_OFFSET + offset_of(BP.setup_header, n)
           for n in ("boot_flag", "jump", "header", "version", "xloadflags", "pref_address", "init_size")}
    assert hdr == dict(boot_flag=0x1FE, jump=0x200, header=0x202, version=0x206, xloadflags=0x236,
                       pref_address=0x258, init_size=0x260)


def test_arm64_image_header_offsets_and_the_probes_constants():
    from kexec_py.image import arm64_image as I
    assert [offset_of(A.image_header, n) for n in ("text_offset", "image_size", "flags", "magic", "res5")] == \
        [0x08, 0x10, 0x18, 0x38, 0x3C]
    assert (offset_of(A.image_header, "magic"), A.HEADER_SIZE) == (I.MAGIC_OFFSET, I.HEADER_SIZE)
    assert A.image_header.parse(bytes(0x38) + I.MAGIC + bytes(4)).magic == I.MAGIC


def test_zboot_header_offsets_and_the_readers_constants():
    from kexec_py.image import zboot as I
    assert [offset_of(Z.zboot_header, n) for n in ("image_type", "payload_offset", "payload_size", "compression",
                                                   "e_lfanew")] == [4, 8, 0xC, 0x18, 0x3C]
    assert offset_of(Z.zboot_header, "compression") == I.COMPRESSION_NAME_OFFSET
    assert offset_of(Z.zboot_header, "linux_pe_magic") - I.COMPRESSION_NAME_OFFSET == I.COMPRESSION_NAME_MAX
    assert Z.HEADER_SIZE == I.HEADER_SIZE


def test_pe_offsets():
    assert offset_of(PE.dos_header, "e_lfanew") == PE.E_LFANEW_OFFSET == 0x3C
    assert offset_of(PE.coff_header, "machine") == 4 and offset_of(PE.coff_header, "size_of_optional_header") == 0x14
    assert offset_of(PE.optional_header_pe32, "data_directories") == 0x60
    assert offset_of(PE.optional_header_pe32plus, "data_directories") == 0x70
    assert offset_of(PE.optional_header_pe32, "number_of_rva_and_sizes") == 0x5C
    assert offset_of(PE.optional_header_pe32plus, "number_of_rva_and_sizes") == 0x6C


# -- fast_struct: the struct form of the program header is the construct definition's ------

@pytest.mark.parametrize("bits, byteorder", COMBOS)
@GENERATED
@given(data=st.data())
def test_program_header_struct_form_builds_and_parses_like_construct(bits, byteorder, data):
    phdr = E.layouts(bits, byteorder).phdr
    fast = phdr_struct(bits, byteorder)
    values = {n: data.draw(U32 if n in ("p_type", "p_flags") else words(bits), label=n) for n in fast.names}
    built = fast.struct.pack(*(values[n] for n in fast.names))
    assert built == phdr.build(values)
    raw = data.draw(st.binary(min_size=fast.size, max_size=fast.size), label="raw")
    parsed = phdr.parse(raw)
    assert fast.struct.unpack(raw) == tuple(parsed[n] for n in fast.names)
    assert fast.byteorder == byteorder


def test_the_little_endian_names_are_the_derived_forms():
    assert PHDR64 is phdr_struct(64).struct and PHDR32 is phdr_struct(32).struct
    values = (1, 2, 3, 4, 5, 6, 7, 8)
    for fast, by_hand in ((PHDR64, "<IIQQQQQQ"), (PHDR32, "<IIIIIIII"), (phdr_struct(64, "big").struct, ">IIQQQQQQ"),
                          (phdr_struct(32, "big").struct, ">IIIIIIII")):
        assert fast.pack(*values) == struct.pack(by_hand, *values)


def test_fast_struct_refuses_what_it_cannot_express():
    for bad in (Struct("a" / VarInt), Struct("a" / Int32ul, "b" / Int16ub), Struct("n" / E.e_ident)):
        with pytest.raises(TypeError):
            fast_struct(bad)
    s = Struct("a" / Int8ul, "b" / Int64ul)
    assert fast_struct(s).struct.unpack(bytes([1]) + (2).to_bytes(8, "little")) == (1, 2)


# -- read_field: one field without the whole parse --------------------------------------------

@GENERATED
@given(page=st.binary(min_size=BP.ZERO_PAGE_SIZE, max_size=BP.ZERO_PAGE_SIZE))
def test_read_field_is_the_full_parse_field(page):
    whole = BP.boot_params.parse(page)
    for name in ("acpi_rsdp_addr", "ext_cmd_line_ptr", "e820_entries", "alt_mem_k"):
        assert read_field(BP.boot_params, name, page) == whole[name]
    for name in ("version", "jump", "xloadflags", "pref_address", "init_size"):
        assert read_field(BP.setup_header, name, page, BP.SETUP_HEADER_OFFSET) == whole.hdr[name]


def test_read_field_when_the_data_ends_early():
    with pytest.raises(StreamError):
        read_field(BP.boot_params, "acpi_rsdp_addr", bytes(0x77))
    assert read_field(BP.boot_params, "acpi_rsdp_addr", bytes(0x77), default=0) == 0
    assert read_field(BP.boot_params, "acpi_rsdp_addr", bytes(0x70) + (0xF59D0).to_bytes(8, "little")) == 0xF59D0
    with pytest.raises(ConstError):
        read_field(PE.dos_header, "e_magic", b"ZM" + bytes(62))
    with pytest.raises(KeyError):
        read_field(PE.dos_header, "nothing", bytes(64))


def test_running_acpi_rsdp_reads_the_zero_page_field():
    from types import SimpleNamespace

    from kexec_py.arch.x86 import running_acpi_rsdp
    page = bytearray(BP.ZERO_PAGE_SIZE)
    struct.pack_into("<Q", page, 0x70, 0x7FE1014)                  # boot_params.acpi_rsdp_addr (zero-page.rst)
    assert running_acpi_rsdp(SimpleNamespace(boot_params=bytes(page), acpi_rsdp=0xF0000)) == 0x7FE1014
    assert running_acpi_rsdp(SimpleNamespace(boot_params=bytes(page[:0x77]), acpi_rsdp=0xF0000)) == 0xF0000
    assert running_acpi_rsdp(SimpleNamespace(boot_params=None, acpi_rsdp=0)) == 0


@pytest.mark.parametrize("version, seeded", [(0x0208, False), (0x0209, True), (0x020F, True)])
def test_setup_bytes_reads_the_protocol_version(version, seeded):
    from kexec_py.arch.x86 import setup_bytes
    from kexec_py.plan.ranges import Range
    header = bytearray(BP.SETUP_HEADER_SIZE)
    struct.pack_into("<H", header, 0x206 - 0x1F1, version)        # boot.rst: version at 0x206
    out = setup_bytes(bytes(header), Range(0x1000000, 0x1004000), b"quiet\0", None, e820=(), running=None,
                      acpi_rsdp=0, rng_seed=bytes(range(32)))
    assert (bytes(range(32)) in out) is seeded


# -- the PE signature check against a reading of the PE format by hand ------------------------

def reference_has_pe_signature(data: bytes) -> bool:
    """Certificate table (data directory 4) present and inside the file, read by hand."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        return False
    lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    if data[lfanew:lfanew + 4] != b"PE\0\0":
        return False
    opt = lfanew + 24
    if opt + 2 > len(data):
        return False
    magic = struct.unpack_from("<H", data, opt)[0]
    dirs = opt + (0x70 if magic == 0x20B else 0x60)
    if dirs + 5 * 8 > len(data) or struct.unpack_from("<I", data, dirs - 4)[0] < 5:
        return False
    offset, size = struct.unpack_from("<II", data, dirs + 4 * 8)
    return size > 0 and offset + size <= len(data)


@st.composite
def pe_files(draw):
    lfanew = draw(st.sampled_from([0x40, 0x80, 0x3C, 0x10]) | st.integers(0, 0x400))
    magic = draw(st.sampled_from([0x20B, 0x10B, 0x0]))
    size = draw(st.integers(0, 0x600))
    data = bytearray(draw(st.binary(min_size=size, max_size=size)))
    full = bytearray(max(size, 0x600))
    full[:len(data)] = data
    full[0:2] = draw(st.sampled_from([b"MZ", b"MZ", b"ZM"]))
    struct.pack_into("<I", full, 0x3C, lfanew)
    full[lfanew:lfanew + 4] = draw(st.sampled_from([b"PE\0\0", b"PE\0\0", b"PE\0\1"]))
    opt = lfanew + 24
    struct.pack_into("<H", full, opt, magic)
    dirs = opt + (0x70 if magic == 0x20B else 0x60)
    struct.pack_into("<I", full, dirs - 4, draw(st.sampled_from([16, 5, 4, 0])))
    struct.pack_into("<II", full, dirs + 32, draw(st.integers(0, 0x600)), draw(st.integers(0, 0x200)))
    return bytes(full[:draw(st.integers(0, len(full)))])


@GENERATED
@given(pe_files())
def test_has_pe_signature_agrees_with_a_reading_by_hand(data):
    from kexec_py.image.uki import has_pe_signature
    assert has_pe_signature(data) == reference_has_pe_signature(data)
    assert has_pe_signature(memoryview(data)) == reference_has_pe_signature(data)


def test_has_pe_signature_on_pe32_and_pe32plus():
    from kexec_py.image.uki import has_pe_signature
    for magic, dirs in ((0x20B, 0x70), (0x10B, 0x60)):
        data = bytearray(0x400)
        data[0:2] = b"MZ"
        struct.pack_into("<I", data, 0x3C, 0x80)
        data[0x80:0x84] = b"PE\0\0"
        struct.pack_into("<H", data, 0x98, magic)
        struct.pack_into("<I", data, 0x98 + dirs - 4, 16)
        struct.pack_into("<II", data, 0x98 + dirs + 32, 0x300, 0x100)
        assert has_pe_signature(bytes(data))
        assert not has_pe_signature(bytes(data[:0x3FF]))                # the certificates run past the end
        struct.pack_into("<I", data, 0x98 + dirs - 4, 4)                  # no directory 4
        assert not has_pe_signature(bytes(data))


# -- headers read by the image readers, generated and packed by hand -------------------------

@GENERATED
@given(text_offset=st.integers(0, 0x1FF) .map(lambda n: n * 4096), image_size=st.integers(1 << 20, 1 << 40),
       flags=st.integers(0, 15), code0=U32, res5=U32)
def test_arm64_image_header_fields(text_offset, image_size, flags, code0, res5):
    from kexec_py.errors import UnsupportedImage
    from kexec_py.image.arm64_image import parse_arm64_image
    head = struct.pack("<IIQQQQQQ4sI", code0, 0, text_offset, image_size, flags, 0, 0, 0, b"ARM\x64", res5)
    data = head + bytes(4096)
    if flags & 1:
        with pytest.raises(UnsupportedImage):
            parse_arm64_image(data, path="Image")
        return
    img = parse_arm64_image(data, path="Image")
    assert (img.text_offset, img.image_size, img.flags) == (text_offset, image_size, flags)


@GENERATED
@given(offset=st.integers(0, 0x2000), size=st.integers(0, 0x2000),
       name=st.sampled_from([b"gzip", b"zstd22", b"xzkern", b"lz4", b"", b"x" * 0x20]))
def test_zboot_payload_info(offset, size, name):
    from kexec_py.errors import CorruptImage, UnsupportedImage
    from kexec_py.image.zboot import COMPRESSIONS, payload_info
    head = struct.pack("<4s4sII8s32sII", b"MZ\0\0", b"zimg", offset, size, bytes(8), name, 0, 0x40)
    data = head + bytes(0x1000)
    try:
        got = payload_info(data, what="vmlinuz")
    except (CorruptImage, UnsupportedImage) as e:
        inside = 0x40 <= offset and size and offset + size <= len(data)
        assert (isinstance(e, CorruptImage) and not inside) or \
            (isinstance(e, UnsupportedImage) and name.decode() not in COMPRESSIONS)
        return
    assert got == (offset, size, COMPRESSIONS[name.decode()])


@pytest.mark.parametrize("ident_class, order", [(1, "<"), (1, ">"), (2, "<"), (2, ">")])
def test_elf_machine_and_describe_in_either_byte_order(ident_class, order):
    from kexec_py.image.open import describe
    from kexec_py.image.vmlinux import elf_machine
    head = b"\x7fELF" + bytes([ident_class, 1 if order == "<" else 2, 1]) + bytes(9) + \
        struct.pack(order + "HH", 2, 22) + bytes(64)
    assert elf_machine(head) == 22
    assert describe(head) == "an ELF file for s390"
    assert elf_machine(head[:19]) is None and elf_machine(head[:5] + b"\x03" + head[6:]) is None


def test_describe_pe_machine():
    from kexec_py.image.open import describe
    head = bytearray(0x100)
    head[0:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x80)
    head[0x80:0x86] = b"PE\0\0" + struct.pack("<H", 0xAA64)
    assert describe(bytes(head)) == "a PE/COFF (EFI) image for arm64"
    assert describe(bytes(head[:0x85])) is None
    struct.pack_into("<I", head, 0x3C, 0xFFFFFFF0)
    assert describe(bytes(head)) is None
