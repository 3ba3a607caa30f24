"""Build the ELF core header (elfcorehdr) that the capture kernel turns into /proc/vmcore.

The header describes the dead kernel's memory: one PT_NOTE per CPU crash-note
buffer, one PT_NOTE for vmcoreinfo, one PT_LOAD for the kernel text mapping
(so tools can translate kernel-image virtual addresses), and one PT_LOAD per
range of System RAM outside the crash region. A PT_LOAD's ``p_offset`` is the
physical address where the capture kernel finds the bytes; for the x86 low
memory that the purgatory backed up, that is the backup copy.
"""

from __future__ import annotations

from kexec_py.errors import SystemStateError
from kexec_py.plan.ranges import Range, align_up
from kexec_py.record import REQUIRED, Record


class KernelTextMap(Record):
    _defaults = dict(
        vaddr=REQUIRED,                 # int
        paddr=REQUIRED,                 # int
        size=REQUIRED,                  # int
    )
    __slots__ = tuple(_defaults)


class Backup(Record):
    """``src`` was copied to physical ``dst`` by the purgatory before the capture kernel ran."""

    _defaults = dict(
        src=REQUIRED,                   # Range
        dst=REQUIRED,                   # int
    )
    __slots__ = tuple(_defaults)


class CoreHeaderSpec(Record):
    _defaults = dict(
        elf_class=REQUIRED,             # int  32 or 64
        machine=REQUIRED,               # int  EM_*
        notes=REQUIRED,                 # tuple[tuple[int, int], ...]  (paddr, size): the CPUs' crash notes, then vmcoreinfo
        ram=REQUIRED,                   # tuple[Range, ...]  dumpable RAM, sorted
        page_offset=REQUIRED,           # int | None  vaddr = paddr + page_offset; None: vaddr left 0
        kernel_text=None,               # KernelTextMap | None
        backup=None,                    # Backup | None
        lowmem_limit=None,              # int | None  32-bit: RAM above this has no linear vaddr (-1)
        align=1024,                     # int  the buffer is padded to a multiple of this
        byteorder="little",             # str  "big" for big-endian machines (s390x)
    )
    __slots__ = tuple(_defaults)


def phdr_count(spec: CoreHeaderSpec) -> int:
    return len(spec.notes) + (1 if spec.kernel_text else 0) + len(spec.ram)


def build_elf_core_header(spec: CoreHeaderSpec) -> bytes:
    """The header bytes, padded with zeros to a multiple of ``spec.align``: ELF32 or ELF64
    (``spec.elf_class``), little- or big-endian (``spec.byteorder``).

    Linear in the number of RAM ranges (a struct pack each, see
    ``kexec_py.structs.elf_core.phdr_struct``). More program headers than e_phnum
    can count is a SystemStateError: the capture kernel reads no extended numbering."""
    # The struct forms of kexec_py.structs.elf_core's layouts (kexec_py.structs.fast), for
    # speed: construct costs a crash load 10-20 ms to import (issue 13). tests/plan/test_elf_core.py
    # checks headers built here against the construct layouts' build.
    from kexec_py.structs import fast as E

    is64 = spec.elf_class == 64
    ehdr = E.elf_ehdr(spec.elf_class, spec.byteorder)
    phdr = E.elf_phdr(spec.elf_class, spec.byteorder)
    count = phdr_count(spec)
    if count >= E.PN_XNUM:
        raise SystemStateError(
            f"the ELF core header would need {count} program headers ({len(spec.ram)} separate ranges of RAM "
            f"to dump), but it can list at most {E.PN_XNUM - 1}",
            "the capture kernel cannot be told about memory this fragmented")
    word_mask = (1 << spec.elf_class) - 1
    rwx = E.PF_R | E.PF_W | E.PF_X
    ehsize, phentsize = ehdr.size, phdr.size
    buf = bytearray(align_up(ehsize + count * phentsize, spec.align))
    pack_into = phdr.pack_into
    at = ehsize

    def put(p_type, offset, vaddr, paddr, size, flags):
        nonlocal at
        if is64:
            pack_into(buf, at, p_type, flags, offset, vaddr & word_mask, paddr, size, size, 0)
        else:
            pack_into(buf, at, p_type, offset, vaddr & word_mask, paddr, size, size, flags, 0)
        at += phentsize

    for addr, size in spec.notes:
        put(E.PT_NOTE, addr, 0, addr, size, 0)
    if spec.kernel_text:
        t = spec.kernel_text
        put(E.PT_LOAD, t.paddr, t.vaddr, t.paddr, t.size, rwx)
    backup = spec.backup
    for r in spec.ram:
        offset = backup.dst if backup and r.start == backup.src.start and r == backup.src else r.start
        put(E.PT_LOAD, offset, _vaddr(spec, r), r.start, r.size, rwx)

    # fields in E.EHDR_NAMES' order: e_ident's (magic, class, data, version, OS ABI, ABI version),
    # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize,
    # e_phnum, e_shentsize, e_shnum, e_shstrndx (E.EHDR_NAMES)
    ehdr.pack_into(buf, 0, E.ELF_MAGIC, E.BITS_CLASS[spec.elf_class], E.BYTEORDER_DATA[spec.byteorder],
                   E.EV_CURRENT, 0, 0, E.ET_CORE, spec.machine, E.EV_CURRENT, 0, ehsize, 0, 0, ehsize,
                   phentsize, count, 0, 0, 0)
    return bytes(buf)


def _vaddr(spec: CoreHeaderSpec, r: Range) -> int:
    if spec.page_offset is None:
        return 0
    if spec.lowmem_limit is not None and r.end > spec.lowmem_limit:
        return -1
    return spec.page_offset + r.start
