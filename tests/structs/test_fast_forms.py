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


def test_attribute_access_like_a_container(debian_kernel):
    hdr, _ = read_setup_header(debian_kernel.read_bytes(), path=str(debian_kernel))
    assert hdr.init_size == hdr["init_size"]
    with pytest.raises(AttributeError):
        hdr.no_such_field
