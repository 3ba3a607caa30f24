"""-d's segment dump, in kexec-tools' format: buf is where the bytes really are."""

from __future__ import annotations

import ctypes

from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.render import render_segments_kexec_tools


def test_segment_buf_is_the_address_of_the_bytes():
    data = bytearray(b"k" * 4096)
    plan = SegmentPlan(arch="x86_64", segments=(Segment("kernel", data, 0x1000000, 0x1000),
                                                Segment("backup", b"", 0x2000000, 0xA0000)),
                       entry=0x1000000, flags=0, cmdline="", page_size=4096)
    lines = render_segments_kexec_tools(plan).splitlines()
    where = ctypes.addressof((ctypes.c_char * len(data)).from_buffer(data))
    assert lines == ["nr_segments = 2",
                     f"segment[0].buf   = {where:#x}", "segment[0].bufsz = 0x1000",
                     "segment[0].mem   = 0x1000000", "segment[0].memsz = 0x1000",
                     "segment[1].buf   = 0x0", "segment[1].bufsz = 0x0",
                     "segment[1].mem   = 0x2000000", "segment[1].memsz = 0xa0000"]
