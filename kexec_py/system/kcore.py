"""The headers of /proc/kcore: how the running kernel maps memory, and its VMCOREINFO.

/proc/kcore is an ELF core file (ELF32 on 32-bit kernels, ELF64 elsewhere, in
the machine's byte order; only little-endian is read here) whose PT_LOADs
describe the kernel's own view of memory (fs/proc/kcore.c):

* the linear (direct) map of RAM: ``p_vaddr - p_paddr`` is the same for every
  such entry (PAGE_OFFSET on x86, the KASLR-randomised linear offset on arm64);
* the kernel image (``_text`` .. ``_end``) where it is mapped apart from the
  linear map (x86_64's __START_KERNEL_map, arm64's kimage_vaddr);
* vmalloc, module and vmemmap areas, whose ``p_paddr`` is all ones (no single
  physical address): reported here as None.

Its first PT_NOTE holds the kernel's notes, VMCOREINFO among them (the KEY=VALUE
lines makedumpfile reads: SYMBOL(x), NUMBER(x), OFFSET(x.y), ...).

Only the headers are needed (``SystemView.kcore_headers`` reads the first 64 KiB,
never the whole file). Missing or non-ELF input gives an empty ``Kcore``;
damaged headers raise SnapshotError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from kexec_py.errors import SnapshotError

PT_LOAD, PT_NOTE = 1, 4
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1

# (ELF header layout after e_ident, program header layout) per class, little-endian
_EHDR = {ELFCLASS32: ("<HHIIIIIHHHHHH", 16), ELFCLASS64: ("<HHIQQQIHHHHHH", 16)}
_PHDR32 = "<IIIIIIII"     # type, offset, vaddr, paddr, filesz, memsz, flags, align
_PHDR64 = "<IIQQQQQQ"     # type, flags, offset, vaddr, paddr, filesz, memsz, align


@dataclass(frozen=True, slots=True)
class KcoreLoad:
    vaddr: int
    paddr: int | None           # None: the kernel gives no physical address (vmalloc, modules...)
    size: int

    @property
    def offset(self) -> int | None:
        """vaddr - paddr, modulo the word size (the map's offset), or None."""
        return None if self.paddr is None else (self.vaddr - self.paddr) % (1 << 64)


@dataclass(frozen=True, slots=True)
class Kcore:
    elf_class: int = 0                                  # 32, 64, or 0 when there is no kcore
    loads: tuple[KcoreLoad, ...] = ()
    vmcoreinfo: dict[str, str] = field(default_factory=dict)

    def number(self, key: str) -> int | None:
        """NUMBER(key) from VMCOREINFO as an unsigned 64-bit value, or None."""
        return _int(self.vmcoreinfo.get(f"NUMBER({key})"), 0)

    def symbol(self, name: str) -> int | None:
        """SYMBOL(name) from VMCOREINFO (hexadecimal), or None."""
        return _int(self.vmcoreinfo.get(f"SYMBOL({name})"), 16)


def _int(raw: str | None, base: int) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw.strip(), base) % (1 << 64)
    except ValueError:
        return None


def parse_kcore(headers: bytes | None) -> Kcore:
    """The PT_LOADs and VMCOREINFO of /proc/kcore's headers (see the module doc)."""
    if not headers or len(headers) < 52 or headers[:4] != b"\x7fELF":
        return Kcore()
    elf_class, data = headers[4], headers[5]
    if elf_class not in _EHDR or data != ELFDATA2LSB:
        raise SnapshotError(f"/proc/kcore: an ELF file of class {elf_class}, data encoding {data}; "
                            "expected a little-endian ELF32 or ELF64 core file")
    fmt, at = _EHDR[elf_class]
    if len(headers) < at + struct.calcsize(fmt):
        raise SnapshotError(f"/proc/kcore: truncated ELF header ({len(headers)} bytes)")
    (_, _, _, _, phoff, _, _, _, phentsize, phnum, *_) = struct.unpack_from(fmt, headers, at)
    phdr = _PHDR32 if elf_class == ELFCLASS32 else _PHDR64
    if phnum and phentsize < struct.calcsize(phdr):
        raise SnapshotError(f"/proc/kcore: program header entries of {phentsize} bytes are too small")
    if phoff + phnum * phentsize > len(headers):
        raise SnapshotError(f"/proc/kcore: {phnum} program headers at {phoff:#x} lie beyond the "
                            f"{len(headers)} bytes read", "is this a real /proc/kcore?")
    all_ones = (1 << (32 if elf_class == ELFCLASS32 else 64)) - 1
    loads, info = [], {}
    for i in range(phnum):
        fields = struct.unpack_from(phdr, headers, phoff + i * phentsize)
        if elf_class == ELFCLASS32:
            p_type, offset, vaddr, paddr, filesz, memsz = fields[:6]
        else:
            p_type, _, offset, vaddr, paddr, filesz, memsz = fields[:7]
        if p_type == PT_LOAD:
            loads.append(KcoreLoad(vaddr, None if paddr == all_ones else paddr, memsz))
        elif p_type == PT_NOTE and not info:
            info = vmcoreinfo_from_notes(headers[offset:offset + filesz])
    return Kcore(32 if elf_class == ELFCLASS32 else 64, tuple(loads), info)


def vmcoreinfo_from_notes(notes: bytes) -> dict[str, str]:
    """The KEY=VALUE lines of the VMCOREINFO note among ELF ``notes`` ({} if none)."""
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, _ = struct.unpack_from("<III", notes, pos)
        name_end = pos + 12 + _align4(namesz)
        if name_end + descsz > len(notes):
            break
        if notes[pos + 12:pos + 12 + namesz].rstrip(b"\0") == b"VMCOREINFO":
            text = notes[name_end:name_end + descsz].decode("ascii", "replace")
            return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        pos = name_end + _align4(descsz)
    return {}


def _align4(n: int) -> int:
    return (n + 3) & ~3


# -- the forms the architecture modules use ---------------------------------------

def kcore_loads(headers: bytes | None) -> list[tuple[int, int, int]]:
    """(vaddr, paddr, size) of each PT_LOAD; paddr is -1 where the kernel gives none."""
    return [(ld.vaddr, -1 if ld.paddr is None else ld.paddr, ld.size) for ld in parse_kcore(headers).loads]


def kcore_vmcoreinfo(headers: bytes | None) -> dict[str, str]:
    """VMCOREINFO's KEY=VALUE lines ({} without kcore or the note)."""
    return parse_kcore(headers).vmcoreinfo
