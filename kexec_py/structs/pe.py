"""PE/COFF headers (Microsoft's PE format specification), as far as a loader of
unified kernel images needs them: the DOS stub's pointer to the PE header, the
COFF file header, the optional header (PE32+ and PE32) and the section table.

Offsets in comments are from the start of each structure.
"""

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

DOS_MAGIC = b"MZ"
PE_SIGNATURE = b"PE\0\0"
E_LFANEW_OFFSET = 0x3C
MAX_SECTIONS = 96                   # the PE specification's limit

IMAGE_FILE_MACHINE_I386 = 0x014C
IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_FILE_MACHINE_ARM64 = 0xAA64
MACHINES = {IMAGE_FILE_MACHINE_I386: "i386", IMAGE_FILE_MACHINE_AMD64: "x86_64",
            IMAGE_FILE_MACHINE_ARM64: "arm64", 0x01C2: "arm (thumb)", 0x01C4: "arm", 0x5064: "riscv64",
            0x6264: "loongarch64"}

PE32_MAGIC = 0x010B
PE32PLUS_MAGIC = 0x020B
IMAGE_DIRECTORY_ENTRY_SECURITY = 4  # the certificate table (Authenticode signatures): a file offset and size

# section characteristics
IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_SCN_MEM_READ = 0x40000000

dos_header = Struct(
    "e_magic" / Const(DOS_MAGIC),      # 0x00
    Padding(E_LFANEW_OFFSET - 2),
    "e_lfanew" / Int32ul,              # 0x3c: file offset of the PE signature
)

coff_header = Struct(
    "signature" / Const(PE_SIGNATURE),  # 0x00
    "machine" / Int16ul,               # 0x04
    "number_of_sections" / Int16ul,    # 0x06
    "time_date_stamp" / Int32ul,       # 0x08
    "pointer_to_symbol_table" / Int32ul,  # 0x0c
    "number_of_symbols" / Int32ul,     # 0x10
    "size_of_optional_header" / Int16ul,  # 0x14
    "characteristics" / Int16ul,       # 0x16
)                                      # 0x18 bytes

data_directory = Struct("virtual_address" / Int32ul, "size" / Int32ul)



def _optional_header(plus: bool) -> Struct:
    """The optional header of PE32+ (``plus``: 64-bit addresses and sizes) or PE32.
    Offsets in comments are PE32 / PE32+."""
    addr = Int64ul if plus else Int32ul
    return Struct(
        "magic" / Int16ul,             # 0x00: 0x10b PE32, 0x20b PE32+
        "major_linker_version" / Int8ul,
        "minor_linker_version" / Int8ul,
        "size_of_code" / Int32ul,      # 0x04
        "size_of_initialized_data" / Int32ul,
        "size_of_uninitialized_data" / Int32ul,
        "address_of_entry_point" / Int32ul,  # 0x10
        "base_of_code" / Int32ul,
        *(() if plus else ("base_of_data" / Int32ul,)),  # 0x18: PE32 only
        "image_base" / addr,           # 0x1c / 0x18
        "section_alignment" / Int32ul,  # 0x20
        "file_alignment" / Int32ul,
        "major_os_version" / Int16ul,  # 0x28
        "minor_os_version" / Int16ul,
        "major_image_version" / Int16ul,
        "minor_image_version" / Int16ul,
        "major_subsystem_version" / Int16ul,  # 0x30
        "minor_subsystem_version" / Int16ul,
        "win32_version_value" / Int32ul,
        "size_of_image" / Int32ul,     # 0x38
        "size_of_headers" / Int32ul,
        "checksum" / Int32ul,          # 0x40
        "subsystem" / Int16ul,
        "dll_characteristics" / Int16ul,
        "size_of_stack_reserve" / addr,  # 0x48
        "size_of_stack_commit" / addr,
        "size_of_heap_reserve" / addr,
        "size_of_heap_commit" / addr,
        "loader_flags" / Int32ul,      # 0x58 / 0x68
        "number_of_rva_and_sizes" / Int32ul,  # data directories present (of the 16 below)
        "data_directories" / Array(16, data_directory),  # 0x60 / 0x70
    )                                  # 0xe0 / 0xf0 bytes


optional_header_pe32plus = _optional_header(plus=True)
optional_header_pe32 = _optional_header(plus=False)

section_header = Struct(
    "name" / Bytes(8),                 # 0x00: NUL padded
    "virtual_size" / Int32ul,          # 0x08: bytes the section really has
    "virtual_address" / Int32ul,       # 0x0c
    "size_of_raw_data" / Int32ul,      # 0x10: bytes in the file, rounded up to FileAlignment
    "pointer_to_raw_data" / Int32ul,   # 0x14
    "pointer_to_relocations" / Int32ul,
    "pointer_to_linenumbers" / Int32ul,
    "number_of_relocations" / Int16ul,
    "number_of_linenumbers" / Int16ul,
    "characteristics" / Int32ul,       # 0x24
)                                      # 0x28 bytes

DOS_HEADER_SIZE = dos_header.sizeof()
COFF_HEADER_SIZE = coff_header.sizeof()
SECTION_HEADER_SIZE = section_header.sizeof()
assert (DOS_HEADER_SIZE, COFF_HEADER_SIZE, SECTION_HEADER_SIZE) == (0x40, 0x18, 0x28)
assert optional_header_pe32plus.sizeof() == 0xF0 and optional_header_pe32.sizeof() == 0xE0
