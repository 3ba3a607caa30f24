"""x86 boot protocol layouts (Documentation/arch/x86/boot.rst,
arch/x86/include/uapi/asm/bootparam.h): the setup header and the zero page.

Offsets in comments are from the start of the kernel image / of boot_params.
"""

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

SETUP_HEADER_OFFSET = 0x1F1
HDRS_MAGIC = b"HdrS"
BOOT_FLAG = 0xAA55
ZERO_PAGE_SIZE = 0x1000
E820_MAX_ENTRIES_ZEROPAGE = 128

# loadflags
LOADED_HIGH = 0x01
# xloadflags
XLF_KERNEL_64 = 0x01
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02
XLF_EFI_HANDOVER_32 = 0x04
XLF_EFI_HANDOVER_64 = 0x08
XLF_EFI_KEXEC = 0x10
XLF_5LEVEL = 0x20
XLF_5LEVEL_ENABLED = 0x40

# e820 types (arch/x86/include/asm/e820/types.h)
E820_TYPE_RAM = 1
E820_TYPE_RESERVED = 2
E820_TYPE_ACPI = 3
E820_TYPE_NVS = 4
E820_TYPE_UNUSABLE = 5
E820_TYPE_PMEM = 7
E820_TYPE_PRAM = 12

# setup_data types
SETUP_NONE = 0
SETUP_E820_EXT = 1
SETUP_EFI = 4
SETUP_RNG_SEED = 9

LOADER_TYPE_KEXEC = 0xD0

setup_header = Struct(
    "setup_sects" / Int8ul,            # 0x1f1
    "root_flags" / Int16ul,            # 0x1f2
    "syssize" / Int32ul,               # 0x1f4
    "ram_size" / Int16ul,              # 0x1f8
    "vid_mode" / Int16ul,              # 0x1fa
    "root_dev" / Int16ul,              # 0x1fc
    "boot_flag" / Int16ul,             # 0x1fe
    "jump" / Int16ul,                  # 0x200
    "header" / Bytes(4),               # 0x202 "HdrS"
    "version" / Int16ul,               # 0x206
    "realmode_swtch" / Int32ul,        # 0x208
    "start_sys_seg" / Int16ul,         # 0x20c
    "kernel_version" / Int16ul,        # 0x20e
    "type_of_loader" / Int8ul,         # 0x210
    "loadflags" / Int8ul,              # 0x211
    "setup_move_size" / Int16ul,       # 0x212
    "code32_start" / Int32ul,          # 0x214
    "ramdisk_image" / Int32ul,         # 0x218
    "ramdisk_size" / Int32ul,          # 0x21c
    "bootsect_kludge" / Int32ul,       # 0x220
    "heap_end_ptr" / Int16ul,          # 0x224
    "ext_loader_ver" / Int8ul,         # 0x226
    "ext_loader_type" / Int8ul,        # 0x227
    "cmd_line_ptr" / Int32ul,          # 0x228
    "initrd_addr_max" / Int32ul,       # 0x22c
    "kernel_alignment" / Int32ul,      # 0x230
    "relocatable_kernel" / Int8ul,     # 0x234
    "min_alignment" / Int8ul,          # 0x235
    "xloadflags" / Int16ul,            # 0x236
    "cmdline_size" / Int32ul,          # 0x238
    "hardware_subarch" / Int32ul,      # 0x23c
    "hardware_subarch_data" / Int64ul, # 0x240
    "payload_offset" / Int32ul,        # 0x248
    "payload_length" / Int32ul,        # 0x24c
    "setup_data" / Int64ul,            # 0x250
    "pref_address" / Int64ul,          # 0x258
    "init_size" / Int32ul,             # 0x260
    "handover_offset" / Int32ul,       # 0x264
    "kernel_info_offset" / Int32ul,    # 0x268
)                                      # ends at 0x26c
SETUP_HEADER_SIZE = setup_header.sizeof()   # 0x7b

boot_e820_entry = Struct(
    "addr" / Int64ul,
    "size" / Int64ul,
    "type" / Int32ul,
)

setup_data = Struct(
    "next" / Int64ul,
    "type" / Int32ul,
    "len" / Int32ul,
)

# EFI (Documentation/arch/x86/zero-page.rst: efi_info at 0x1c0; boot.rst: setup_data of
# type SETUP_EFI). The loader signature says which EFI the kernel was booted from.
EFI_LOADER_SIGNATURE_64 = b"EL64"
EFI_LOADER_SIGNATURE_32 = b"EL32"
EFI_MEMDESC_VERSION = 1

efi_info = Struct(
    "efi_loader_signature" / Bytes(4),  # 0x00 "EL64" / "EL32"
    "efi_systab" / Int32ul,             # 0x04 the EFI system table, low 32 bits
    "efi_memdesc_size" / Int32ul,       # 0x08 bytes per memory descriptor
    "efi_memdesc_version" / Int32ul,    # 0x0c
    "efi_memmap" / Int32ul,             # 0x10 the memory map, low 32 bits
    "efi_memmap_size" / Int32ul,        # 0x14 its size in bytes
    "efi_systab_hi" / Int32ul,          # 0x18
    "efi_memmap_hi" / Int32ul,          # 0x1c
)
EFI_INFO_SIZE = efi_info.sizeof()       # 0x20

# The payload of a SETUP_EFI setup_data (the kernel's struct efi_setup_data): what a kernel
# booted by kexec needs of the firmware, which it can no longer ask the firmware for. The
# second field was the runtime services table (the kernel now reads it from the system table).
efi_setup_data = Struct(
    "fw_vendor" / Int64ul,
    "runtime" / Int64ul,
    "tables" / Int64ul,
    "smbios" / Int64ul,
    "reserved" / Array(8, Int64ul),
)
EFI_SETUP_DATA_SIZE = efi_setup_data.sizeof()   # 0x60

# One EFI memory descriptor (UEFI spec, EFI_MEMORY_DESCRIPTOR, version 1), as the runtime
# map in /sys/firmware/efi/runtime-map/N/ lists them.
efi_memory_desc = Struct(
    "type" / Int32ul,
    "pad" / Int32ul,
    "phys_addr" / Int64ul,
    "virt_addr" / Int64ul,
    "num_pages" / Int64ul,
    "attribute" / Int64ul,
)
EFI_MEMORY_DESC_SIZE = efi_memory_desc.sizeof()  # 40

# The fields of boot_params a loader fills; the rest is kept as opaque bytes.
boot_params = Struct(
    "screen_info" / Bytes(0x40),       # 0x000
    "apm_bios_info" / Bytes(0x14),     # 0x040
    Padding(4),                        # 0x054
    "tboot_addr" / Int64ul,            # 0x058
    "ist_info" / Bytes(0x10),          # 0x060
    "acpi_rsdp_addr" / Int64ul,        # 0x070
    Padding(8),                        # 0x078
    "hd0_info" / Bytes(16),            # 0x080
    "hd1_info" / Bytes(16),            # 0x090
    "sys_desc_table" / Bytes(0x10),    # 0x0a0
    "olpc_ofw_header" / Bytes(0x10),   # 0x0b0
    "ext_ramdisk_image" / Int32ul,     # 0x0c0
    "ext_ramdisk_size" / Int32ul,      # 0x0c4
    "ext_cmd_line_ptr" / Int32ul,      # 0x0c8
    Padding(112),                      # 0x0cc
    "cc_blob_address" / Int32ul,       # 0x13c
    "edid_info" / Bytes(0x80),         # 0x140
    "efi_info" / efi_info,             # 0x1c0
    "alt_mem_k" / Int32ul,             # 0x1e0
    "scratch" / Int32ul,               # 0x1e4
    "e820_entries" / Int8ul,           # 0x1e8
    "eddbuf_entries" / Int8ul,         # 0x1e9
    "edd_mbr_sig_buf_entries" / Int8ul,  # 0x1ea
    "kbd_status" / Int8ul,             # 0x1eb
    "secure_boot" / Int8ul,            # 0x1ec
    Padding(2),                        # 0x1ed
    "sentinel" / Int8ul,               # 0x1ef
    Padding(1),                        # 0x1f0
    "hdr" / setup_header,              # 0x1f1
    Padding(0x290 - 0x1F1 - SETUP_HEADER_SIZE),
    "edd_mbr_sig_buffer" / Bytes(0x40),  # 0x290
    "e820_table" / Array(E820_MAX_ENTRIES_ZEROPAGE, boot_e820_entry),  # 0x2d0
    Padding(48),                       # 0xcd0
    "eddbuf" / Bytes(0x1EC),           # 0xd00
    Padding(276),                      # 0xeec
)
assert boot_params.sizeof() == ZERO_PAGE_SIZE
