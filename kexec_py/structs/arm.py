"""32-bit arm kernel images: the zImage header and its size tag, and U-Boot's legacy
uImage header.

zImage (Documentation/arch/arm/booting.rst, "zImage header"; all words little-endian on a
little-endian kernel). Offsets are from the start of the zImage:

    0x24  magic       0x016F2818
    0x28  start       the address the zImage is linked at (0: position independent)
    0x2c  end         its end address: end - start is the zImage's size, without an
                      appended device tree
    0x30  endian      0x04030201 (little-endian kernel)
    0x34  magic2      0x45454545: a table of tags follows
    0x38  table       offset of that table in the zImage

The table (the decompressor's linker script) is a list of tags, each ``size`` words
long (``size`` and ``tag`` included), ending with a word 0. Tag 0x5a534c4b ("KLSZ",
the kernel size tag) holds: the offset of the word that holds the decompressed
kernel's size (the last word of the compressed payload, little-endian), the
decompressed kernel's bss size, TEXT_OFFSET (where above the start of RAM the
kernel is decompressed to) and the size of the decompressor's malloc area.

uImage: U-Boot's ``image_header_t`` (include/image.h), 64 bytes, every field
big-endian; the payload follows the header.

ATAGs, the tagged list a kernel booted without a device tree reads (Documentation/arch/
arm/booting.rst, "Setup the kernel tagged list"; arch/arm/include/uapi/asm/setup.h): a
list of tags in memory, each a header of two 32-bit words (its size in 32-bit words,
header included, then the tag) and its data; the list starts with ATAG_CORE and ends
with ATAG_NONE (size 0). Little-endian words on a little-endian kernel.
"""

from construct import Bytes, Const, Int8ub, Int32ub, Int32ul, Struct

ZIMAGE_MAGIC = 0x016F2818
ZIMAGE_HEADER_OFFSET = 0x24
ZIMAGE_TABLE_MAGIC = 0x45454545
ZIMAGE_ENDIAN_LE = 0x04030201
TAG_KERNEL_SIZE = 0x5A534C4B          # "KLSZ" read as a little-endian word

zimage_header = Struct(               # at ZIMAGE_HEADER_OFFSET
    "magic" / Int32ul,                # 0x24 ZIMAGE_MAGIC
    "start" / Int32ul,                # 0x28
    "end" / Int32ul,                  # 0x2c
    "endian" / Int32ul,               # 0x30 ZIMAGE_ENDIAN_LE
    "table_magic" / Int32ul,          # 0x34 ZIMAGE_TABLE_MAGIC when a table follows
    "table" / Int32ul,                # 0x38 offset of the tag table
)
assert zimage_header.sizeof() == 0x18

tag_header = Struct(
    "size" / Int32ul,                 # in words, this header included; 0 ends the table
    "tag" / Int32ul,
)

kernel_size_tag = Struct(             # the words after a TAG_KERNEL_SIZE tag_header
    "size_ptr" / Int32ul,             # offset of the decompressed size word (little-endian)
    "bss_size" / Int32ul,             # the decompressed kernel's bss
    "text_offset" / Int32ul,          # where above the start of RAM the kernel is decompressed to
    "malloc_size" / Int32ul,          # the decompressor's heap, after its stack
)

UIMAGE_MAGIC = 0x27051956
uimage_header = Struct(
    "magic" / Const(UIMAGE_MAGIC, Int32ub),   # 0x00
    "hcrc" / Int32ub,                 # 0x04 CRC-32 of these 64 bytes with hcrc taken as 0
    "time" / Int32ub,                 # 0x08 creation time (seconds since 1970)
    "size" / Int32ub,                 # 0x0c payload size
    "load" / Int32ub,                 # 0x10 load address
    "ep" / Int32ub,                   # 0x14 entry point
    "dcrc" / Int32ub,                 # 0x18 CRC-32 of the payload
    "os" / Int8ub,                    # 0x1c IH_OS_*
    "arch" / Int8ub,                  # 0x1d IH_ARCH_*
    "type" / Int8ub,                  # 0x1e IH_TYPE_*
    "comp" / Int8ub,                  # 0x1f IH_COMP_*
    "name" / Bytes(32),                  # 0x20 image name, NUL padded
)
UIMAGE_HEADER_SIZE = uimage_header.sizeof()
assert UIMAGE_HEADER_SIZE == 64

IH_OS_LINUX = 5
IH_ARCH_ARM = 2
IH_TYPE_KERNEL = 2
IH_TYPE_KERNEL_NOLOAD = 14
IH_COMP = {0: None, 1: "gzip", 2: "bzip2", 3: "lzma", 4: "lzo", 5: "lz4", 6: "zstd"}
IH_ARCH_NAMES = {2: "arm", 3: "i386", 5: "mips", 7: "powerpc", 22: "arm64", 26: "riscv", 18: "sandbox"}

ATAG_NONE = 0x00000000
ATAG_CORE = 0x54410001
ATAG_MEM = 0x54410002
ATAG_INITRD = 0x54410005              # the initrd by virtual address (deprecated)
ATAG_INITRD2 = 0x54420005             # the initrd by physical address
ATAG_CMDLINE = 0x54410009
ATAG_HEADER_WORDS = 2

atag_header = Struct(
    "size" / Int32ul,                 # in 32-bit words, this header included; 0 only for ATAG_NONE
    "tag" / Int32ul,
)
atag = Struct(                        # one tag, its data as bytes
    "size" / Int32ul,
    "tag" / Int32ul,
    "data" / Bytes(lambda ctx: max(ctx.size - ATAG_HEADER_WORDS, 0) * 4),
)
atag_mem32 = Struct(                  # ATAG_MEM's data
    "size" / Int32ul,
    "start" / Int32ul,                # physical start
)
atag_initrd2 = Struct(                # ATAG_INITRD2's data
    "start" / Int32ul,                # physical start
    "size" / Int32ul,                 # bytes
)
assert atag_header.sizeof() == ATAG_HEADER_WORDS * 4 and atag_mem32.sizeof() == atag_initrd2.sizeof() == 8
