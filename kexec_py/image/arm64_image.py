"""The arm64 ``Image``: the flat kernel binary that Documentation/arch/arm64/booting.rst describes.

Its 64-byte header (all fields little-endian; the layout is
``kexec_py.structs.arm64.image_header``) holds, among others:

    0x08  text_offset   where in a 2 MiB aligned block the image expects to sit
    0x10  image_size    bytes the image occupies once running (bss included); 0 before 3.17
    0x18  flags         bit 0 big-endian, bits 1-2 page size, bit 3 placement freedom
    0x38  magic         "ARM\\x64"

An Image with an EFI stub starts with "MZ" and still carries this header; it is
entered at its first byte either way. ``Image.gz`` and friends are undone by
the generic decompress step before probing, and an EFI zboot ``vmlinuz`` by
``kexec_py.image.zboot``.

An arm64 ``vmlinux`` is the ELF file the Image is cut from (``objcopy -O binary``):
it is linked at the kernel's virtual address (p_paddr = p_vaddr, in the top of
the address space), its entry point ``_text`` is the Image header, and it is an
ET_DYN file when built relocatable (KASLR). ``parse_arm64_vmlinux`` lays its
PT_LOADs out by virtual address from the entry point, which gives the Image
back; from there it loads like any Image, and ``kexec_file_load`` (which takes
only an Image on arm64) gets those bytes too.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.errors import CorruptImage, UnsupportedImage

MAGIC = b"ARM\x64"
MAGIC_OFFSET = 0x38
HEADER_SIZE = 64
MiB = 1 << 20

FLAG_BE = 1 << 0
FLAG_PHYS_BASE_ANY = 1 << 3         # may be placed anywhere in RAM, not only near its start


@dataclass(frozen=True, slots=True)
class Arm64Image:
    path: str
    data: bytes = None              # the (decompressed) Image
    text_offset: int = 0
    image_size: int = 0             # the memory the kernel occupies from its load address
    flags: int = 0
    legacy_header: bool = False     # image_size was 0: the pre-3.17 defaults were assumed
    source: str = "Image"           # "Image" (also from Image.gz, zboot) or "vmlinux" (an ELF file laid out)

    @property
    def format(self) -> str:
        return self.source

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & FLAG_BE)

    @property
    def payload(self) -> memoryview:
        return memoryview(self.data)

    def __repr__(self) -> str:
        return (f"<Arm64Image {self.path} ({self.source}) text_offset={self.text_offset:#x} "
                f"image_size={self.image_size:#x} flags={self.flags:#x}>")


def looks_like_arm64_image(head: bytes) -> bool:
    return len(head) >= HEADER_SIZE and head[MAGIC_OFFSET:MAGIC_OFFSET + 4] == MAGIC


def parse_arm64_image(data: bytes, *, path: str) -> Arm64Image:
    """Read and check the header. Raises CorruptImage / UnsupportedImage."""
    if not looks_like_arm64_image(data):
        raise CorruptImage(f"{path} is not an arm64 Image (no 'ARM\\x64' magic at 0x38)",
                           "pass the kernel's Image, Image.gz or vmlinuz")
    from kexec_py.structs.arm64 import image_header
    hdr = image_header.parse(bytes(data[:HEADER_SIZE]))        # looks_like_arm64_image checked the length
    text_offset, image_size, flags = hdr.text_offset, hdr.image_size, hdr.flags
    legacy = image_size == 0
    if legacy:
        # Kernels before 3.17 leave image_size at 0; booting.rst says to assume these.
        text_offset, image_size = 0x80000, 16 * MiB
    if flags & FLAG_BE:
        raise UnsupportedImage(f"{path} is a big-endian arm64 kernel",
                               "kexec-py loads little-endian kernels only")
    if text_offset % 4096 or text_offset >= 2 * MiB:
        raise CorruptImage(f"{path}: text_offset {text_offset:#x} is not a page offset inside 2 MiB",
                           "the Image header is damaged: re-copy the kernel")
    if image_size < len(data) // 2:
        raise CorruptImage(f"{path}: image_size {image_size:#x} is smaller than the file "
                           f"({len(data):#x} bytes)", "the Image header is damaged: re-copy the kernel")
    return Arm64Image(path=path, data=data, text_offset=text_offset, image_size=image_size,
                      flags=flags, legacy_header=legacy)


def parse_arm64_vmlinux(data: bytes, *, path: str) -> Arm64Image:
    """An arm64 ELF vmlinux as the Image it holds. Raises CorruptImage / UnsupportedImage."""
    from dataclasses import replace

    from kexec_py.image.vmlinux import EM_AARCH64, check_loads, elf_loads, open_elf_kernel
    elf = open_elf_kernel(data, path=path, machine=EM_AARCH64, machine_name="arm64", types=("ET_EXEC", "ET_DYN"))
    loads, _ = elf_loads(elf, data, path)
    check_loads(loads, len(data), path, by="vaddr", limit=None)
    loads.sort(key=lambda s: s.vaddr)
    entry = elf.header.e_entry
    below = [s for s in loads if s.vaddr < entry]
    holding = [s for s in loads if s.vaddr <= entry < s.vaddr + s.filesz]
    if not holding:
        raise CorruptImage(f"{path}: the entry point {entry:#x} is in no PT_LOAD's file bytes, so the "
                           "arm64 Image header cannot be found", "give the vmlinux itself, or its Image")
    if below:
        raise UnsupportedImage(f"{path}: a PT_LOAD at {below[0].vaddr:#x} lies below the entry point "
                               f"{entry:#x}; an arm64 vmlinux starts at its entry point (_text)",
                               "give the kernel's Image instead")
    flat = bytearray(max(s.vaddr + s.filesz for s in loads) - entry)
    for s in loads:
        flat[s.vaddr - entry:s.vaddr - entry + s.filesz] = memoryview(data)[s.offset:s.offset + s.filesz]
    if not looks_like_arm64_image(flat):
        raise UnsupportedImage(f"{path} is an arm64 ELF file without an arm64 Image header at its entry "
                               f"point {entry:#x}: not a Linux vmlinux", "give a Linux kernel's vmlinux or Image")
    image = parse_arm64_image(bytes(flat), path=path)
    del flat
    mem_end = max(s.vaddr + s.memsz for s in loads) - entry
    if image.legacy_header:
        image = replace(image, image_size=max(image.image_size, mem_end))
    elif mem_end > image.image_size:
        raise CorruptImage(f"{path}: the PT_LOADs reach {mem_end:#x} bytes past the entry point, more "
                           f"than the Image header's image_size {image.image_size:#x}",
                           "the vmlinux is damaged: re-copy it")
    return replace(image, source="vmlinux")
