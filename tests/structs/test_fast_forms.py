"""The precompiled struct forms in kexec_py.structs.fast against the construct
definitions they stand for (kexec_py.structs.bootparam): the same format and field
names as fast_struct derives from the definition, the same offsets as the
definition gives, and the same values when a real Debian kernel's setup header and
random bytes are read both ways, through the bzImage reader the kexec_file_load path
uses."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kexec_py.image.bzimage import header_len, read_setup_header
from kexec_py.structs import bootparam as BP, fast as F
from kexec_py.structs.layout import fast_struct, offset_of

GENERATED = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def test_setup_header_form_is_the_definitions():
    derived = fast_struct(BP.setup_header)
    assert F.SETUP_HEADER.format == derived.struct.format
    assert F.SETUP_HEADER_NAMES == derived.names
    assert F.SETUP_HEADER.size == BP.SETUP_HEADER_SIZE == BP.setup_header.sizeof()
    assert F.SETUP_HEADER_OFFSET == BP.SETUP_HEADER_OFFSET
    assert F.SETUP_HEADER_HEADER_AT == offset_of(BP.setup_header, "header")
    assert F.SETUP_HEADER_HEADER_AT - 2 == offset_of(BP.setup_header, "jump")


def test_flags_are_the_definitions():
    for name in ("LOADED_HIGH", "XLF_KERNEL_64", "XLF_CAN_BE_LOADED_ABOVE_4G"):
        assert getattr(F, name) == getattr(BP, name), name


def _construct_header(data: bytes) -> dict:
    parsed = BP.setup_header.parse(data[BP.SETUP_HEADER_OFFSET:BP.SETUP_HEADER_OFFSET + BP.SETUP_HEADER_SIZE])
    return {k: v for k, v in parsed.items() if not k.startswith("_")}


def _construct_header_len(data: bytes) -> int:
    jump = _construct_header(data)["jump"]
    return min(offset_of(BP.setup_header, "header") + (jump >> 8), BP.SETUP_HEADER_SIZE)


def test_debian_kernel_header_read_both_ways(debian_kernel):
    data = debian_kernel.read_bytes()
    hdr, setup_size = read_setup_header(data, path=str(debian_kernel))
    assert dict(hdr) == _construct_header(data)
    assert hdr.version == _construct_header(data)["version"] and hdr.header == b"HdrS"
    assert header_len(data) == _construct_header_len(data)


@GENERATED
@given(st.binary(min_size=BP.SETUP_HEADER_SIZE, max_size=BP.SETUP_HEADER_SIZE))
def test_random_headers_read_both_ways(header):
    # a bzImage-shaped file around random setup-header bytes: the magic the reader checks
    # first, setup_sects 1 (a 1 KiB real-mode part) and no syssize claim beyond the file
    data = bytearray(4096)
    data[BP.SETUP_HEADER_OFFSET:BP.SETUP_HEADER_OFFSET + BP.SETUP_HEADER_SIZE] = header
    data[0x1F1] = 1
    data[0x1F4:0x1F8] = b"\0\0\0\0"
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    data = bytes(data)
    hdr, setup_size = read_setup_header(data, path="random")
    assert dict(hdr) == _construct_header(data)
    assert setup_size == 1024
    assert header_len(data) == _construct_header_len(data)


# -- the forms of the x86 crash-load path (issue 13, second part) --------------------------------

from kexec_py.structs import elf as ELF  # noqa: E402
from kexec_py.structs.layout import read_field  # noqa: E402

COMBOS = [(64, "little"), (32, "little"), (64, "big"), (32, "big")]


def test_bootparam_offsets_and_constants_are_the_definitions():
    for name, at in F.BOOT_PARAMS_AT.items():
        assert at == offset_of(BP.boot_params, name), name
    for name in F.SETUP_HEADER_NAMES:
        assert F.SETUP_HEADER_AT[name] == offset_of(BP.setup_header, name), name
        assert F.SETUP_HEADER_FIELDS[name] == (offset_of(BP.setup_header, name),
                                              BP.setup_header.subcons[F.SETUP_HEADER_NAMES.index(name)].sizeof())
    assert F.SCREEN_INFO_SIZE == offset_of(BP.boot_params, "apm_bios_info")
    for name in ("ZERO_PAGE_SIZE", "E820_MAX_ENTRIES_ZEROPAGE", "LOADER_TYPE_KEXEC", "XLF_EFI_KEXEC", "SETUP_EFI",
                 "SETUP_RNG_SEED", "EFI_MEMDESC_VERSION"):
        assert getattr(F, name) == getattr(BP, name), name
    assert F.EFI_INFO.size == BP.EFI_INFO_SIZE and F.EFI_MEMORY_DESC.size == BP.EFI_MEMORY_DESC_SIZE
    assert F.EFI_SETUP_DATA.size == BP.EFI_SETUP_DATA_SIZE and F.SETUP_DATA.size == BP.setup_data.sizeof()


def test_flat_bootparam_forms_are_the_definitions():
    for form, definition, names in ((F.E820_ENTRY, BP.boot_e820_entry, ("addr", "size", "type")),
                                    (F.SETUP_DATA, BP.setup_data, ("next", "type", "len")),
                                    (F.EFI_INFO, BP.efi_info, F.EFI_INFO_NAMES),
                                    (F.EFI_MEMORY_DESC, BP.efi_memory_desc, None)):
        derived = fast_struct(definition)
        assert form.format == derived.struct.format
        assert names is None or derived.names == names


@GENERATED
@given(st.binary(min_size=0, max_size=0x90), st.sampled_from(F.SETUP_HEADER_NAMES))
def test_setup_header_field_is_read_fields(data, name):
    if name == "header":
        return                                  # bytes, not read as a number
    assert F.setup_header_field(data, name, default=-1) == read_field(BP.setup_header, name, data, default=-1)


@GENERATED
@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=12, max_size=12), st.binary(min_size=4, max_size=4),
       st.lists(st.integers(0, (1 << 32) - 1), min_size=7, max_size=7))
def test_efi_forms_pack_as_the_definitions(words, signature, info):
    assert F.EFI_SETUP_DATA.pack(*words) == BP.efi_setup_data.build(dict(
        fw_vendor=words[0], runtime=words[1], tables=words[2], smbios=words[3], reserved=words[4:]))
    desc = dict(type=info[0], pad=info[1], phys_addr=words[0], virt_addr=words[1], num_pages=words[2],
                attribute=words[3])
    assert F.EFI_MEMORY_DESC.pack(info[0], info[1], *words[:4]) == BP.efi_memory_desc.build(desc)
    values = (signature, *info)
    packed = F.EFI_INFO.pack(*values)
    assert packed == BP.efi_info.build(dict(zip(F.EFI_INFO_NAMES, values)))
    assert dict(zip(F.EFI_INFO_NAMES, F.EFI_INFO.unpack(packed))) == \
        {k: v for k, v in BP.efi_info.parse(packed).items() if not k.startswith("_")}


def test_elf_constants_are_the_definitions():
    for name in ("ELF_MAGIC", "EI_NIDENT", "CLASS_BITS", "BITS_CLASS", "DATA_BYTEORDER", "BYTEORDER_DATA",
                 "EV_CURRENT", "ET_CORE", "PT_LOAD", "PT_NOTE", "PF_X", "PF_W", "PF_R"):
        assert getattr(F, name) == getattr(ELF, name), name
    from kexec_py.structs import elf_core
    assert F.PN_XNUM == elf_core.PN_XNUM


@pytest.mark.parametrize("bits, byteorder", COMBOS)
def test_elf_phdr_and_nhdr_forms_are_the_definitions(bits, byteorder):
    lay = ELF.layouts(bits, byteorder)
    derived = fast_struct(lay.phdr)
    assert F.elf_phdr(bits, byteorder).format == derived.struct.format
    assert derived.names == (F.PHDR64_NAMES if bits == 64 else F.PHDR32_NAMES)
    nhdr = fast_struct(lay.nhdr)
    assert F.elf_nhdr(byteorder).format == nhdr.struct.format and nhdr.names == F.NHDR_NAMES
    assert F.elf_ehdr(bits, byteorder).size == lay.ehdr.sizeof()


@pytest.mark.parametrize("bits, byteorder", COMBOS)
@GENERATED
@given(data=st.data())
def test_elf_ehdr_form_packs_and_unpacks_as_the_definition(bits, byteorder, data):
    lay = ELF.layouts(bits, byteorder)
    addr = st.integers(0, (1 << bits) - 1)
    half, word = st.integers(0, 0xFFFF), st.integers(0, (1 << 32) - 1)
    byte = st.integers(0, 255)
    ident = data.draw(st.fixed_dictionaries(dict(ei_class=byte, ei_data=byte, ei_version=byte, ei_osabi=byte,
                                                 ei_abiversion=byte)))
    rest = data.draw(st.fixed_dictionaries(dict(
        e_type=half, e_machine=half, e_version=word, e_entry=addr, e_phoff=addr, e_shoff=addr, e_flags=word,
        e_ehsize=half, e_phentsize=half, e_phnum=half, e_shentsize=half, e_shnum=half, e_shstrndx=half)))
    built = lay.ehdr.build(dict(e_ident=ident, **rest))
    values = dict(magic=ELF.ELF_MAGIC, **ident, **rest)
    assert F.elf_ehdr(bits, byteorder).pack(*(values[n] for n in F.EHDR_NAMES)) == built
    assert dict(zip(F.EHDR_NAMES, F.elf_ehdr(bits, byteorder).unpack(built))) == values


def test_elf_forms_refuse_what_layouts_refuses():
    for bad in ((64, "native"), (16, "little")):
        with pytest.raises(ValueError) as theirs:
            ELF.layouts(*bad)
        with pytest.raises(ValueError) as mine:
            F.elf_ehdr(*bad)
        assert str(mine.value) == str(theirs.value)


def test_attribute_access_like_a_container(debian_kernel):
    hdr, _ = read_setup_header(debian_kernel.read_bytes(), path=str(debian_kernel))
    assert hdr.init_size == hdr["init_size"]
    with pytest.raises(AttributeError):
        hdr.no_such_field
