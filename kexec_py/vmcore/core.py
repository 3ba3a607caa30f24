"""An ELF vmcore: its PT_LOADs, its VMCOREINFO, and kernel virtual memory read through them.

A vmcore (/proc/vmcore, or a copy saved with cp or makedumpfile -E) is an ELF core
file, ELF32 or ELF64 in either byte order. Its PT_NOTE segment holds the dead
kernel's notes, VMCOREINFO among them (KEY=VALUE lines: SYMBOL(name)=hex address,
NUMBER(name)=value, SIZE(type)=bytes, OFFSET(type.member)=bytes, LENGTH(...),
KERNELOFFSET=hex, OSRELEASE=...; Documentation/admin-guide/kdump/vmcoreinfo.rst).
Each PT_LOAD puts ``p_memsz`` bytes of physical memory from ``p_paddr`` at file
offset ``p_offset`` (bytes past ``p_filesz`` read as zeros).

A kernel virtual address is turned into a physical one from VMCOREINFO, by the rules
of the architecture the ELF header's e_machine names, and never from the headers'
``p_vaddr`` (which the loader that built the core header may have got wrong):

* x86_64: the kernel image is mapped at __START_KERNEL_map (0xffffffff80000000) +
  (physical address - NUMBER(phys_base)), over NUMBER(KERNEL_IMAGE_SIZE) bytes;
  any other address (the direct map, whose base KASLR moves) is looked up in the
  kernel's page tables from SYMBOL(init_top_pgt): 4 levels, or 5 when
  NUMBER(pgtable_l5_enabled)=1, with 1 GiB and 2 MiB pages (bit 7, PSE) and the
  memory-encryption bit NUMBER(sme_mask) cleared from every entry.
* arm64: the kernel image is at physical address + NUMBER(kimage_voffset); the
  linear map is at PAGE_OFFSET + (physical address - NUMBER(PHYS_OFFSET)).
  PAGE_OFFSET = -(1 << VA_BITS) with the linear map in the lower half of the kernel's
  address space (kernels since 5.4, Documentation/arch/arm64/memory.rst), or
  -(1 << (VA_BITS - 1)) with it in the upper half (older kernels): the image is in
  the other half, which the kernel symbols VMCOREINFO lists show. VA_BITS is
  64 - NUMBER(TCR_EL1_T1SZ) when given, else NUMBER(VA_BITS).
* ppc64: the linear map at PAGE_OFFSET 0xc000000000000000 covers the kernel too.
* i386: lowmem at PAGE_OFFSET 0xc0000000 (the 3G/1G split).

An e_machine without rules here, or VMCOREINFO without the numbers a rule needs,
falls back to the program headers' ``p_vaddr`` (``Vmcore.by_header``). s390x (EM_S390)
has no rule: its capture kernel writes the core header itself (no loader is involved),
and on 6.1 the kernel runs identity-mapped (KERNELOFFSET=0, p_vaddr = p_paddr), which
``by_header`` reads (tests/test_guest_s390x.py compares the result with vmcore-dmesg).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Callable

from kexec_py.errors import KexecError

PT_LOAD, PT_NOTE = 1, 4
EM_386, EM_PPC64, EM_X86_64, EM_AARCH64 = 3, 21, 62, 183
MACHINES = {EM_386: "i386", EM_PPC64: "ppc64", EM_X86_64: "x86_64", EM_AARCH64: "arm64"}

X86_64_START_KERNEL_MAP = 0xFFFF_FFFF_8000_0000
X86_64_KERNEL_IMAGE_SIZE = 1 << 30          # with KASLR (arch/x86/include/asm/page_64_types.h)
X86_PTE_ADDR_MASK = 0x000F_FFFF_FFFF_F000   # bits 12..51 of a page-table entry
X86_PRESENT, X86_PSE = 1 << 0, 1 << 7
PPC64_PAGE_OFFSET = 0xC000_0000_0000_0000
I386_PAGE_OFFSET = 0xC000_0000
PAGE_SIZE = 4096
U64 = (1 << 64) - 1


class VmcoreError(KexecError):
    """The vmcore cannot be read (not an ELF core, no VMCOREINFO, an address no PT_LOAD holds)."""


@dataclass(frozen=True, slots=True)
class Load:
    offset: int          # p_offset
    vaddr: int           # p_vaddr
    paddr: int           # p_paddr
    filesz: int          # p_filesz
    memsz: int           # p_memsz


def parse_number(raw: str) -> int:
    """A VMCOREINFO value: "0x..." is hexadecimal, anything else decimal (NUMBER() is
    printed with %ld, a few arm64 numbers with 0x%llx); negatives wrap to 64 bits."""
    raw = raw.strip()
    return (int(raw, 16) if raw.lower().startswith(("0x", "-0x")) else int(raw, 10)) & U64


@dataclass
class Vmcore:
    path: str
    bits: int                               # 32 or 64 (the ELF class)
    byteorder: str                          # "little" or "big"
    machine: int                            # e_machine
    loads: list[Load]
    info: dict[str, str] = field(default_factory=dict)      # VMCOREINFO, KEY -> VALUE
    read_at: Callable[[int, int], bytes] | None = None       # (file offset, size) -> bytes
    by_header: bool = False                 # translate through p_vaddr, as vmcore-dmesg does

    # -- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, *, by_header: bool = False) -> "Vmcore":
        """Read the headers and VMCOREINFO of the vmcore at ``path`` (VmcoreError if it is not one)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise VmcoreError(f"{path}: cannot open it: {e.strerror}",
                              "give the path of a vmcore (/proc/vmcore in a capture kernel)") from None

        def read_at(offset: int, size: int) -> bytes:
            try:
                return os.pread(fd, size, offset)
            except OSError as e:
                raise VmcoreError(f"{path}: cannot read {size} bytes at offset {offset:#x}: {e.strerror}") from None
            except OverflowError:           # an offset past 2**63: seen from a broken core header
                raise VmcoreError(f"{path}: a program header puts memory at file offset {offset:#x}, "
                                  "past the end of any file", "the core header that the capture kernel "
                                  "was loaded with is wrong; reload it and crash again") from None

        core = cls._from_headers(path, read_at)
        core.by_header = by_header
        return core

    @classmethod
    def _from_headers(cls, path: str, read_at: Callable[[int, int], bytes]) -> "Vmcore":
        from construct import ConstructError

        from kexec_py.structs import elf as E
        from kexec_py.structs.layout import fast_struct
        not_elf = "give an ELF vmcore: /proc/vmcore, or a copy made with cp or makedumpfile -E"
        ident_raw = read_at(0, E.EI_NIDENT)
        try:
            ident = E.e_ident.parse(ident_raw)
        except ConstructError:
            raise VmcoreError(f"{path}: not an ELF file", not_elf) from None
        bits, byteorder = E.CLASS_BITS.get(ident.ei_class), E.DATA_BYTEORDER.get(ident.ei_data)
        if bits is None or byteorder is None:
            raise VmcoreError(f"{path}: ELF class {ident.ei_class} / data encoding {ident.ei_data} "
                              "is neither ELF32 nor ELF64, little- nor big-endian", not_elf)
        lay = E.layouts(bits, byteorder)
        raw = read_at(0, lay.ehdr.sizeof())
        if len(raw) < lay.ehdr.sizeof():
            raise VmcoreError(f"{path}: the ELF header is cut short ({len(raw)} bytes)", not_elf)
        ehdr = lay.ehdr.parse(raw)
        if ehdr.e_type != E.ET_CORE:
            raise VmcoreError(f"{path}: an ELF file of type {ehdr.e_type}, not a core file (ET_CORE)", not_elf)
        phdr = fast_struct(lay.phdr)
        if ehdr.e_phnum and ehdr.e_phentsize < phdr.size:
            raise VmcoreError(f"{path}: program headers of {ehdr.e_phentsize} bytes, "
                              f"less than the {phdr.size} of an ELF{bits} one", not_elf)
        table = read_at(ehdr.e_phoff, ehdr.e_phnum * ehdr.e_phentsize)
        if len(table) < ehdr.e_phnum * ehdr.e_phentsize:
            raise VmcoreError(f"{path}: its {ehdr.e_phnum} program headers at {ehdr.e_phoff:#x} "
                              "lie past the end of the file", "the copy is truncated")
        loads, notes = [], []
        for i in range(ehdr.e_phnum):
            p = dict(zip(phdr.names, phdr.struct.unpack_from(table, i * ehdr.e_phentsize)))
            if p["p_type"] == PT_LOAD:
                loads.append(Load(p["p_offset"], p["p_vaddr"], p["p_paddr"], p["p_filesz"], p["p_memsz"]))
            elif p["p_type"] == PT_NOTE:
                notes.append(read_at(p["p_offset"], p["p_filesz"]))
        info: dict[str, str] = {}
        for blob in notes:
            info.update(_vmcoreinfo(blob, lay.nhdr))
        if not info:
            raise VmcoreError(f"{path}: no VMCOREINFO note",
                              "the crashed kernel needs CONFIG_CRASH_DUMP (and the core header its note)")
        loads.sort(key=lambda ld: ld.paddr)
        return cls(path, bits, byteorder, ehdr.e_machine, loads, info, read_at)

    # -- VMCOREINFO -----------------------------------------------------------------

    def value(self, key: str) -> int | None:
        raw = self.info.get(key)
        if raw is None:
            return None
        try:
            return int(raw.strip(), 16) if key.startswith(("SYMBOL(", "KERNELOFFSET")) else parse_number(raw)
        except ValueError:
            raise VmcoreError(f"{self.path}: VMCOREINFO's {key}={raw!r} is not a number") from None

    def symbol(self, name: str) -> int | None:
        return self.value(f"SYMBOL({name})")

    def number(self, name: str) -> int | None:
        return self.value(f"NUMBER({name})")

    def need(self, key: str) -> int:
        """A VMCOREINFO value the reader cannot do without."""
        v = self.value(key)
        if v is None:
            raise VmcoreError(f"{self.path}: VMCOREINFO has no {key}",
                              "the crashed kernel does not export it; is the vmcore from a kernel this reader knows?")
        return v

    @property
    def pointer_bits(self) -> int:
        return 32 if self.machine == EM_386 else self.bits

    # -- physical memory ------------------------------------------------------------

    def read_phys(self, paddr: int, size: int) -> bytes:
        """``size`` bytes of the dead kernel's memory from physical address ``paddr``."""
        out = bytearray()
        starts = [ld.paddr for ld in self.loads]
        while size > 0:
            i = bisect_right(starts, paddr) - 1
            ld = next((x for x in (self.loads[j] for j in range(i, -1, -1))
                       if x.paddr <= paddr < x.paddr + x.memsz), None) if i >= 0 else None
            if ld is None:
                raise VmcoreError(f"{self.path}: no PT_LOAD holds physical address {paddr:#x}",
                                  "the dump lacks that memory (filtered, or a wrong core header)")
            rel = paddr - ld.paddr
            n = min(size, ld.memsz - rel)
            in_file = max(0, min(n, ld.filesz - rel))
            chunk = self.read_at(ld.offset + rel, in_file) if in_file else b""
            if len(chunk) < in_file:
                raise VmcoreError(f"{self.path}: the file ends inside the PT_LOAD of {ld.paddr:#x}",
                                  "the copy is truncated")
            out += chunk + bytes(n - in_file)
            paddr, size = paddr + n, size - n
        return bytes(out)

    # -- virtual memory -------------------------------------------------------------

    def read(self, vaddr: int, size: int) -> bytes:
        """``size`` bytes of kernel virtual memory from ``vaddr``."""
        if self.by_header or self._rule() is None:
            return self._read_by_header(vaddr, size)
        out = bytearray()
        while size > 0:
            paddr, run = self._rule()(vaddr)
            n = min(size, run)
            out += self.read_phys(paddr, n)
            vaddr, size = (vaddr + n) & U64, size - n
        return bytes(out)

    def word(self, vaddr: int, size: int | None = None) -> int:
        """An unsigned integer (a pointer-sized one by default) at ``vaddr``."""
        size = size or self.pointer_bits // 8
        return int.from_bytes(self.read(vaddr, size), self.byteorder)

    def _read_by_header(self, vaddr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            ld = next((x for x in self.loads if x.vaddr <= vaddr < x.vaddr + x.memsz), None)
            if ld is None:
                raise VmcoreError(f"{self.path}: no PT_LOAD maps virtual address {vaddr:#x}")
            n = min(size, ld.vaddr + ld.memsz - vaddr)
            out += self.read_phys(ld.paddr + vaddr - ld.vaddr, n)
            vaddr, size = vaddr + n, size - n
        return bytes(out)

    def _rule(self) -> Callable[[int], tuple[int, int]] | None:
        """vaddr -> (paddr, bytes known contiguous from there), for this machine; None: none known."""
        if not hasattr(self, "_rule_cache"):
            make = {EM_X86_64: self._x86_64_rule, EM_AARCH64: self._arm64_rule,
                    EM_PPC64: self._ppc64_rule, EM_386: self._i386_rule}.get(self.machine)
            self._rule_cache = make() if make else None
        return self._rule_cache

    def _no_translation(self, vaddr: int) -> VmcoreError:
        arch = MACHINES.get(self.machine, f"e_machine {self.machine}")
        return VmcoreError(f"{self.path}: {vaddr:#x} is no {arch} kernel address this reader can translate",
                           "VMCOREINFO or the dump is damaged")

    def _x86_64_rule(self):
        phys_base, top = self.number("phys_base"), self.symbol("init_top_pgt")
        if phys_base is None or top is None:
            return None
        image_end = X86_64_START_KERNEL_MAP + (self.number("KERNEL_IMAGE_SIZE") or X86_64_KERNEL_IMAGE_SIZE)
        mask = X86_PTE_ADDR_MASK & ~(self.number("sme_mask") or 0)
        levels = 5 if self.number("pgtable_l5_enabled") == 1 else 4

        def image(vaddr: int) -> int:
            return (vaddr - X86_64_START_KERNEL_MAP + phys_base) & U64

        def rule(vaddr: int) -> tuple[int, int]:
            if X86_64_START_KERNEL_MAP <= vaddr < image_end:
                return image(vaddr), image_end - vaddr
            table = image(top)
            for level in range(levels, 0, -1):          # 5/4: PGD/P4D, 3: PUD, 2: PMD, 1: PTE
                shift = 12 + 9 * (level - 1)
                entry = int.from_bytes(self.read_phys(table + ((vaddr >> shift) & 511) * 8, 8), "little")
                if not entry & X86_PRESENT:
                    raise self._no_translation(vaddr)
                if level == 1 or (level in (2, 3) and entry & X86_PSE):
                    page = 1 << shift
                    base = entry & mask & ~(page - 1)
                    return base + (vaddr & (page - 1)), page - (vaddr & (page - 1))
                table = entry & mask
            raise AssertionError("unreachable")
        return rule

    def _arm64_rule(self):
        voffset, phys_offset = self.number("kimage_voffset"), self.number("PHYS_OFFSET")
        t1sz = self.number("TCR_EL1_T1SZ")
        va_bits = 64 - t1sz if t1sz else self.number("VA_BITS")
        if voffset is None or phys_offset is None or not va_bits or not 32 < va_bits < 64:
            return None
        half = 1 << (va_bits - 1)
        symbols = [self.symbol(s) for s in ("prb", "log_buf", "_stext")]
        image_in_upper = any(s is not None and s & half for s in symbols)
        page_offset = (-(1 << va_bits) if image_in_upper else -half) & U64

        def rule(vaddr: int) -> tuple[int, int]:
            if page_offset <= vaddr < page_offset + half:
                return (vaddr - page_offset + phys_offset) & U64, page_offset + half - vaddr
            if vaddr >= (-(1 << va_bits) & U64):
                return (vaddr - voffset) & U64, PAGE_SIZE - (vaddr % PAGE_SIZE)
            raise self._no_translation(vaddr)
        return rule

    def _ppc64_rule(self):
        def rule(vaddr: int) -> tuple[int, int]:
            if PPC64_PAGE_OFFSET <= vaddr < PPC64_PAGE_OFFSET + (1 << 60):
                return vaddr - PPC64_PAGE_OFFSET, PPC64_PAGE_OFFSET + (1 << 60) - vaddr
            raise self._no_translation(vaddr)
        return rule

    def _i386_rule(self):
        def rule(vaddr: int) -> tuple[int, int]:
            if I386_PAGE_OFFSET <= vaddr < 1 << 32:
                return vaddr - I386_PAGE_OFFSET, (1 << 32) - vaddr
            raise self._no_translation(vaddr)
        return rule


def _vmcoreinfo(notes: bytes, nhdr) -> dict[str, str]:
    """The KEY=VALUE lines of the VMCOREINFO notes among ELF ``notes`` (later lines win)."""
    size = nhdr.sizeof()
    out: dict[str, str] = {}
    pos = 0
    while pos + size <= len(notes):
        h = nhdr.parse(notes[pos:pos + size])
        name_at = pos + size
        desc_at = name_at + ((h.n_namesz + 3) & ~3)
        end = desc_at + ((h.n_descsz + 3) & ~3)
        if desc_at + h.n_descsz > len(notes):
            break
        if notes[name_at:name_at + h.n_namesz].rstrip(b"\0") == b"VMCOREINFO" and h.n_type == 0:
            text = notes[desc_at:desc_at + h.n_descsz].decode("ascii", "replace")
            for line in text.splitlines():
                key, eq, val = line.partition("=")
                if eq:
                    out[key] = val.rstrip("\0")
        pos = end
    return out
