"""The arm64 kernel Image header (Documentation/arch/arm64/booting.rst): the first 64
bytes of an ``Image``, little-endian. An Image with an EFI stub keeps it, with "MZ"
in code0 and the PE header's offset in res5.

Offsets in comments are from the start of the Image. The magic and the flag bits
are ``kexec_py.image.arm64_image``'s constants (its probe reads the magic without
construct); tests/structs checks they agree with this layout.
"""

from construct import Bytes, Int32ul, Int64ul, Struct

image_header = Struct(
    "code0" / Int32ul,                 # 0x00 executable code
    "code1" / Int32ul,                 # 0x04
    "text_offset" / Int64ul,           # 0x08 where in a 2 MiB aligned block the image expects to sit
    "image_size" / Int64ul,            # 0x10 bytes it occupies once running (bss included); 0 before 3.17
    "flags" / Int64ul,                 # 0x18 bit 0 big-endian, bits 1-2 page size, bit 3 placement
    "res2" / Int64ul,                  # 0x20
    "res3" / Int64ul,                  # 0x28
    "res4" / Int64ul,                  # 0x30
    "magic" / Bytes(4),                # 0x38 "ARM\x64"
    "res5" / Int32ul,                  # 0x3c
)                                      # 0x40 bytes
HEADER_SIZE = image_header.sizeof()
assert HEADER_SIZE == 0x40
