"""32-bit arm ELF kernels (vmlinux, EM_ARM), loaded as they are: no decompressor.

The arm kernel is linked at PAGE_OFFSET + TEXT_OFFSET (arch/arm/kernel/vmlinux.lds.S:
``_text`` opens the first PT_LOAD there) and its p_paddr equals p_vaddr: the virtual
address is all the file says. It is entered, like a zImage, with the MMU off at the
physical address of its entry (``stext``), r0 = 0, r1 = the machine type, r2 = the device
tree or ATAGs, and it takes its own PHYS_OFFSET from where it runs: the physical address
of ``_text`` less TEXT_OFFSET (head.S, ARM_PATCH_PHYS_VIRT). So the loader only needs
TEXT_OFFSET and each PT_LOAD's place above ``_text``; the planner puts ``_text`` at its
RAM base + TEXT_OFFSET as it puts a zImage.

PAGE_OFFSET is one of 0x40000000, 0x80000000, 0xB0000000 or 0xC0000000 (the VMSPLIT
choices), all 256 MiB aligned, and TEXT_OFFSET is below 128 MiB: so PAGE_OFFSET is the
lowest PT_LOAD's address rounded down to 256 MiB, and TEXT_OFFSET the rest.
"""

from __future__ import annotations

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.image.arm_zimage import PAGE_DIRECTORY, ArmImage

EM_ARM = 40
PAGE_OFFSET_ALIGN = 256 << 20
MAX_TEXT_OFFSET = 128 << 20


def parse_arm_vmlinux(data, *, path: str) -> ArmImage:
    """An arm vmlinux's PT_LOADs relative to ``_text`` and its TEXT_OFFSET. Raises
    CorruptImage / UnsupportedImage."""
    from kexec_py.image.vmlinux import check_loads, elf_loads, open_elf_kernel
    data = bytes(data)
    elf = open_elf_kernel(data, path=path, machine=EM_ARM, machine_name="32-bit arm", bits=32)
    loads, _ = elf_loads(elf, data, path)
    check_loads(loads, len(data), path, by="vaddr", limit=1 << 32)
    text = min(s.vaddr for s in loads)
    page_offset = text & ~(PAGE_OFFSET_ALIGN - 1)
    text_offset = text - page_offset
    if text_offset % 4096 or not PAGE_DIRECTORY <= text_offset < MAX_TEXT_OFFSET or page_offset < 0x40000000:
        raise UnsupportedImage(f"{path}: an arm ELF file whose first PT_LOAD is at {text:#x}, not at a kernel's "
                               "PAGE_OFFSET + TEXT_OFFSET (TEXT_OFFSET a page multiple below 128 MiB)",
                               "give the kernel's vmlinux, or its zImage")
    entry = elf.header.e_entry
    if not any(s.vaddr <= entry < s.vaddr + s.filesz for s in loads):
        raise CorruptImage(f"{path}: the entry point {entry:#x} is in no PT_LOAD's file bytes")
    pieces = tuple((s.vaddr - text, s.offset, s.filesz, s.memsz) for s in sorted(loads, key=lambda s: s.vaddr))
    return ArmImage(path=path, data=data, source="vmlinux", text_offset=text_offset, pieces=pieces,
                    entry_offset=entry - text, load_addr=None)
