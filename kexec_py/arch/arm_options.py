"""The 32-bit arm options (kexec-tools' arm zImage loader's --image-size and --page-offset),
read into the value the arm planners use. Light on purpose: checked before any planner
is imported."""

from __future__ import annotations

from kexec_py import options
from kexec_py.errors import UsageError

TITLE = "arm options"
NAMES = tuple(o.name for o in options.OPTIONS if o.group == "arm")


def parse(v: dict):
    """The arm options of a parsed command line ``v`` (an ``kexec_py.arch.arm.ArmOptions``)."""
    from kexec_py.arch.arm import ArmOptions
    from kexec_py.request import parse_number
    size = parse_number(v["image_size"], "--image-size")
    page_offset = parse_number(v["page_offset"], "--page-offset")
    if size is not None and not 0 < size < 1 << 32:
        raise UsageError(f"--image-size: {size:#x} is not a size inside the 32-bit address space")
    if page_offset is not None and not 0 < page_offset < 1 << 32:
        raise UsageError(f"--page-offset: {page_offset:#x} is not a 32-bit kernel address")
    if v.get("atags") and v.get("dtb") is not None:
        raise UsageError("--atags and --dtb: the new kernel gets either ATAGs or a device tree",
                         "drop one of them")
    return ArmOptions(image_size=size, page_offset=page_offset, atags=bool(v.get("atags")))
