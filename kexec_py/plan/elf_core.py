"""Build the ELF core header (elfcorehdr) that the capture kernel turns into /proc/vmcore.

The header describes the dead kernel's memory: one PT_NOTE per CPU crash-note
buffer, one PT_NOTE for vmcoreinfo, one PT_LOAD for the kernel text mapping
(so tools can translate kernel-image virtual addresses), and one PT_LOAD per
range of System RAM outside the crash region. A PT_LOAD's ``p_offset`` is the
physical address where the capture kernel finds the bytes; for the x86 low
memory that the purgatory backed up, that is the backup copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.plan.ranges import Range, align_up


@dataclass(frozen=True, slots=True)
class KernelTextMap:
    vaddr: int
    paddr: int
    size: int


@dataclass(frozen=True, slots=True)
class Backup:
    """``src`` was copied to physical ``dst`` by the purgatory before the capture kernel ran."""

    src: Range
    dst: int


@dataclass(frozen=True, slots=True)
class CoreHeaderSpec:
    elf_class: int                      # 32 or 64
    machine: int                        # EM_*
    notes: tuple[tuple[int, int], ...]  # (paddr, size): the CPUs' crash notes, then vmcoreinfo
    ram: tuple[Range, ...]              # dumpable RAM, sorted
    page_offset: int | None             # vaddr = paddr + page_offset; None: vaddr left 0
    kernel_text: KernelTextMap | None = None
    backup: Backup | None = None
    lowmem_limit: int | None = None     # 32-bit: RAM above this has no linear vaddr (-1)
    align: int = 1024                   # the buffer is padded to a multiple of this


def phdr_count(spec: CoreHeaderSpec) -> int:
    return len(spec.notes) + (1 if spec.kernel_text else 0) + len(spec.ram)


def build_elf_core_header(spec: CoreHeaderSpec) -> bytes:
    """The header bytes, padded with zeros to a multiple of ``spec.align``."""
    from kexec_py.structs import elf_core as E

    is64 = spec.elf_class == 64
    ehdr_t, phdr_t = (E.Elf64_Ehdr, E.Elf64_Phdr) if is64 else (E.Elf32_Ehdr, E.Elf32_Phdr)
    word_mask = (1 << spec.elf_class) - 1
    rwx = E.PF_R | E.PF_W | E.PF_X

    def phdr(p_type, offset, vaddr, paddr, size, flags):
        return dict(p_type=p_type, p_flags=flags, p_offset=offset, p_vaddr=vaddr & word_mask,
                    p_paddr=paddr, p_filesz=size, p_memsz=size, p_align=0)

    phdrs = [phdr(E.PT_NOTE, addr, 0, addr, size, 0) for addr, size in spec.notes]
    if spec.kernel_text:
        t = spec.kernel_text
        phdrs.append(phdr(E.PT_LOAD, t.paddr, t.vaddr, t.paddr, t.size, rwx))
    for r in spec.ram:
        offset = r.start
        if spec.backup and r == spec.backup.src:
            offset = spec.backup.dst
        phdrs.append(phdr(E.PT_LOAD, offset, _vaddr(spec, r), r.start, r.size, rwx))

    ident = b"\x7fELF" + bytes([E.ELFCLASS64 if is64 else E.ELFCLASS32, E.ELFDATA2LSB,
                                E.EV_CURRENT, 0]) + bytes(8)
    ehdr = ehdr_t.build(dict(
        e_ident=ident, e_type=E.ET_CORE, e_machine=spec.machine, e_version=E.EV_CURRENT,
        e_entry=0, e_phoff=ehdr_t.sizeof(), e_shoff=0, e_flags=0, e_ehsize=ehdr_t.sizeof(),
        e_phentsize=phdr_t.sizeof(), e_phnum=len(phdrs), e_shentsize=0, e_shnum=0, e_shstrndx=0))
    body = ehdr + b"".join(phdr_t.build(p) for p in phdrs)
    return body + bytes(align_up(len(body), spec.align) - len(body))


def _vaddr(spec: CoreHeaderSpec, r: Range) -> int:
    if spec.page_offset is None:
        return 0
    if spec.lowmem_limit is not None and r.end > spec.lowmem_limit:
        return -1
    return spec.page_offset + r.start
