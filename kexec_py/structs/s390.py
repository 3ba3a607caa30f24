"""The s390 kernel image (``arch/s390/boot/image`` of a build, Debian's /boot/vmlinuz-*):
its IPL record, its entry block and its parameter area. Every field is big-endian.

The file is a memory image of the start of storage: it is loaded at address 0, and its
bytes at offset N belong at absolute address N. A loader takes it from 0x10000 on, where
the boot code starts (arch/s390/include/asm/setup.h):

    0x00000  IPL record: an ESA/390 PSW (8 bytes: mask word, then the 31-bit mode bit
             and the address of the IPL code) followed by format-0 CCWs whose command
             code is 0x02 (read): what an IPL from a card reader would run
    0x10000  the normal entry (STARTUP_NORMAL_OFFSET): a branch
    0x10008  EP_STRING "S390EP", a byte 0, then the number of valid entries after the
             normal one (1: the kdump entry at 0x10010, STARTUP_KDUMP_OFFSET, exists)
    0x10400  PARMAREA (struct parmarea):
             +0x00 ipl_device, +0x08 initrd_start, +0x10 initrd_size,
             +0x18 oldmem_base, +0x20 oldmem_size (a capture kernel's view of the crashed
             kernel's memory), +0x28 kernel_version (the address, in this image, of the
             version string), +0x30 max_command_line_size (0 in older kernels: the
             legacy 896 bytes), +0x80 the command line, NUL-terminated
"""

from construct import Bytes, Const, Int8ub, Int32ub, Int64ub, Padding, Struct

IMAGE_START = 0x10000                 # STARTUP_NORMAL_OFFSET: what a loader loads, and where
KDUMP_ENTRY = 0x10010                 # STARTUP_KDUMP_OFFSET
ENTRY_BLOCK = 0x10008                 # EP_OFFSET
PARMAREA = 0x10400
COMMAND_LINE = 0x10480
LEGACY_COMMAND_LINE_SIZE = 896        # what a parmarea with max_command_line_size 0 holds

PSW_ESA390 = 0x00080000               # the IPL PSW's mask word: bit 12 (ESA/390 format), all else 0
PSW_31BIT = 0x80000000                # the address word's addressing-mode bit
CCW_READ = 0x02

ipl_record = Struct(                  # at 0
    "psw_mask" / Int32ub,             # PSW_ESA390
    "psw_address" / Int32ub,          # PSW_31BIT | the IPL code's address (below IMAGE_START)
    "ccw1_command" / Int8ub,          # CCW_READ
    "ccw1_rest" / Bytes(7),
    "ccw2_command" / Int8ub,          # CCW_READ
    "ccw2_rest" / Bytes(7),
)
assert ipl_record.sizeof() == 24

entry_block = Struct(                 # at ENTRY_BLOCK
    "ep_string" / Const(b"S390EP"),
    Padding(1),
    "entries" / Int8ub,               # entries after the normal one (1: the kdump entry)
)
assert entry_block.sizeof() == 8

parmarea = Struct(                    # at PARMAREA
    "ipl_device" / Int64ub,           # +0x00
    "initrd_start" / Int64ub,         # +0x08
    "initrd_size" / Int64ub,          # +0x10
    "oldmem_base" / Int64ub,          # +0x18
    "oldmem_size" / Int64ub,          # +0x20
    "kernel_version" / Int64ub,       # +0x28 address of the version string in the image
    "max_command_line_size" / Int64ub,  # +0x30 0: LEGACY_COMMAND_LINE_SIZE
    Padding(COMMAND_LINE - PARMAREA - 0x38),
)
assert parmarea.sizeof() == COMMAND_LINE - PARMAREA
