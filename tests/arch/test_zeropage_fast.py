"""The zero page written with struct forms (build_zero_page, for speed: no construct on the
crash-load path) against the same page built through construct's boot_params definition
(_build_zero_page_construct): byte for byte, on random setup headers, running zero pages,
addresses, e820 tables and efi_info, and on the Debian kernel's header."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kexec_py.arch.zeropage import E820_TYPES, ZeroPageSpec, _build_zero_page_construct, build_zero_page
from kexec_py.errors import PlacementError
from kexec_py.plan.ranges import Range
from kexec_py.structs import bootparam as BP

GENERATED = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)

u32, u64 = st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 64) - 1)
ranges = st.builds(lambda start, size: Range.sized(start, size), st.integers(0, 1 << 44), st.integers(1, 1 << 40))
efi_infos = st.none() | st.fixed_dictionaries({
    "efi_loader_signature": st.sampled_from([b"EL64", b"EL32"]), "efi_systab": u32, "efi_memdesc_size": u32,
    "efi_memdesc_version": u32, "efi_memmap": u32, "efi_memmap_size": u32, "efi_systab_hi": u32,
    "efi_memmap_hi": u32})
running_pages = st.none() | st.binary(min_size=0, max_size=64) | st.binary(min_size=4096, max_size=4096) \
    | st.binary(min_size=4096, max_size=4096).map(lambda b: bytes(0x78) + b[0x78:])   # no RSDP there
specs = st.builds(
    ZeroPageSpec,
    setup_header=st.binary(min_size=0, max_size=0xA0),
    cmdline_addr=st.integers(0, (1 << 48) - 1),
    initrd=st.none() | ranges,
    e820=st.lists(st.tuples(ranges, st.sampled_from(sorted(E820_TYPES))), max_size=BP.E820_MAX_ENTRIES_ZEROPAGE)
    .map(tuple) | st.just(((Range(0, 0x9FC00), "ram"), (Range(0x100000, 0x7FFE0000), "ram"))),
    running=running_pages, acpi_rsdp=u64, setup_data=u64, efi_info=efi_infos)


@GENERATED
@given(specs)
def test_random_zero_pages_built_both_ways(spec):
    assert build_zero_page(spec) == _build_zero_page_construct(spec)


def test_debian_kernel_header_both_ways(debian_kernel):
    data = debian_kernel.read_bytes()
    header = data[BP.SETUP_HEADER_OFFSET:BP.SETUP_HEADER_OFFSET + BP.SETUP_HEADER_SIZE]
    spec = ZeroPageSpec(setup_header=header, cmdline_addr=0x1234_5000, initrd=Range.sized(0x7000_0000, 40 << 20),
                        e820=((Range(0, 0x9FC00), "ram"), (Range(0x100000, 0x7FFE0000), "ram"),
                              (Range(0x7FFE0000, 0x80000000), "reserved")),
                        running=bytes(range(256)) * 16, acpi_rsdp=0xF5A40)
    page = build_zero_page(spec)
    assert page == _build_zero_page_construct(spec)
    parsed = BP.boot_params.parse(page)
    assert parsed.hdr.type_of_loader == BP.LOADER_TYPE_KEXEC and parsed.hdr.ramdisk_size == 40 << 20
    assert parsed.e820_entries == 3 and parsed.e820_table[2].type == BP.E820_TYPE_RESERVED


def test_too_many_e820_entries_refused_both_ways():
    spec = ZeroPageSpec(setup_header=b"", cmdline_addr=0, initrd=None, running=None,
                        e820=tuple((Range.sized(i << 20, 4096), "ram") for i in range(129)))
    for build in (build_zero_page, _build_zero_page_construct):
        with pytest.raises(PlacementError, match="129 entries"):
            build(spec)
