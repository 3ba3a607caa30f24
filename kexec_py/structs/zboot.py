"""The EFI zboot header (drivers/firmware/efi/libstub/zboot-header.S): a compressed
kernel's PE/COFF EFI application whose DOS header describes its payload, all
little-endian.

Offsets in comments are from the start of the file. ``kexec_py.image.zboot`` holds
the magic and the compression names; tests/structs checks its constants against
this layout.
"""

from construct import Bytes, Int32ul, Padding, Struct

zboot_header = Struct(
    "mz_magic" / Bytes(4),             # 0x00 "MZ\0\0"
    "image_type" / Bytes(4),           # 0x04 "zimg"
    "payload_offset" / Int32ul,        # 0x08 from the start of the file
    "payload_size" / Int32ul,          # 0x0c the compressed bytes (without any trailing size word)
    Padding(8),                        # 0x10 reserved
    "compression" / Bytes(0x20),       # 0x18 the compression's name, NUL-terminated
    "linux_pe_magic" / Int32ul,        # 0x38
    "e_lfanew" / Int32ul,              # 0x3c the PE header, as in every DOS header
)                                      # 0x40 bytes
HEADER_SIZE = zboot_header.sizeof()
assert HEADER_SIZE == 0x40
