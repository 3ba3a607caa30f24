"""The headers of /proc/kcore: how the running kernel maps memory, and its VMCOREINFO.

/proc/kcore is an ELF core file (ELF32 on 32-bit kernels, ELF64 elsewhere, in
the machine's byte order: both are read) whose PT_LOADs describe the kernel's
own view of memory (fs/proc/kcore.c):

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

The layouts are ``kexec_py.structs.elf``'s, read with their struct forms
(``kexec_py.structs.fast``, which tests/structs/test_fast_forms.py holds to the
construct definitions): for speed, since the 64 KiB read holds up to 1169 ELF64
program headers (one per range of RAM), which construct parses in 21 ms (4.7 ms
compiled) and struct in 0.13 ms (measured on the project's 2-core machine; parse_kcore
of such a header takes 0.9 ms in all), and importing construct costs a crash load
10-20 ms (issue 13). tests/system/test_kcore.py checks the reader against headers
packed by hand, in both word sizes and byte orders.
"""

from __future__ import annotations

from kexec_py.errors import SnapshotError
from kexec_py.record import REQUIRED, Record, factory

PT_LOAD, PT_NOTE = 1, 4
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2


class KcoreLoad(Record):
    _defaults = dict(
        vaddr=REQUIRED,                 # int
        paddr=REQUIRED,                 # int | None  None: the kernel gives no physical address (vmalloc, modules...)
        size=REQUIRED,                  # int
    )
    __slots__ = tuple(_defaults)

    @property
    def offset(self) -> int | None:
        """vaddr - paddr, modulo the word size (the map's offset), or None."""
        return None if self.paddr is None else (self.vaddr - self.paddr) % (1 << 64)


class Kcore(Record):
    _defaults = dict(
        elf_class=0,                    # int  32, 64, or 0 when there is no kcore
        loads=(),                       # tuple[KcoreLoad, ...]
        vmcoreinfo=factory(dict),       # dict[str, str]
    )
    __slots__ = tuple(_defaults)

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
    """The PT_LOADs and VMCOREINFO of /proc/kcore's headers (see the module doc):
    ELF32 or ELF64, either byte order."""
    if not headers:
        return Kcore()
    # The struct forms of kexec_py.structs.elf's layouts (kexec_py.structs.fast), for speed:
    # construct costs a crash load 10-20 ms to import (issue 13). tests/system/test_kcore_fast.py
    # reads generated headers both ways (this and the construct definitions).
    from kexec_py.structs import fast as E
    if len(headers) < E.elf_ehdr(32, "little").size:
        return Kcore()                          # not even an ELF32 header: no kcore
    if headers[:len(E.ELF_MAGIC)] != E.ELF_MAGIC:
        return Kcore()                          # not an ELF file
    ei_class, ei_data = headers[4], headers[5]
    bits, byteorder = E.CLASS_BITS.get(ei_class), E.DATA_BYTEORDER.get(ei_data)
    if bits is None or byteorder is None:
        raise SnapshotError(f"/proc/kcore: an ELF file of class {ei_class}, data encoding "
                            f"{ei_data}; expected an ELF32 or ELF64 core file, little- or big-endian")
    ehdr_form = E.elf_ehdr(bits, byteorder)
    if len(headers) < ehdr_form.size:
        raise SnapshotError(f"/proc/kcore: truncated ELF header ({len(headers)} bytes)")
    ehdr = dict(zip(E.EHDR_NAMES, ehdr_form.unpack_from(headers)))
    phoff, phentsize, phnum = ehdr["e_phoff"], ehdr["e_phentsize"], ehdr["e_phnum"]
    phdr = E.elf_phdr(bits, byteorder)
    if phnum and phentsize < phdr.size:
        raise SnapshotError(f"/proc/kcore: program header entries of {phentsize} bytes are too small")
    if phoff + phnum * phentsize > len(headers):
        raise SnapshotError(f"/proc/kcore: {phnum} program headers at {phoff:#x} lie beyond the "
                            f"{len(headers)} bytes read", "is this a real /proc/kcore?")
    names = E.PHDR64_NAMES if bits == 64 else E.PHDR32_NAMES
    i_type, i_offset, i_vaddr, i_paddr, i_filesz, i_memsz = (
        names.index(n) for n in ("p_type", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz"))
    unpack_from = phdr.unpack_from
    all_ones = (1 << bits) - 1
    loads, info = [], {}
    for i in range(phnum):
        fields = unpack_from(headers, phoff + i * phentsize)
        p_type = fields[i_type]
        if p_type == PT_LOAD:
            paddr = fields[i_paddr]
            loads.append(KcoreLoad(fields[i_vaddr], None if paddr == all_ones else paddr, fields[i_memsz]))
        elif p_type == PT_NOTE and not info:
            offset = fields[i_offset]
            info = vmcoreinfo_from_notes(headers[offset:offset + fields[i_filesz]], byteorder=byteorder)
    return Kcore(bits, tuple(loads), info)


def vmcoreinfo_from_notes(notes: bytes, *, byteorder: str = "little") -> dict[str, str]:
    """The KEY=VALUE lines of the VMCOREINFO note among ELF ``notes`` ({} if none),
    whose headers are in ``byteorder``."""
    from kexec_py.structs.fast import elf_nhdr      # structs.elf's nhdr as a struct form (speed, as above)
    nhdr = elf_nhdr(byteorder)
    size = nhdr.size
    pos = 0
    while pos + size <= len(notes):
        n_namesz, n_descsz, _ = nhdr.unpack_from(notes, pos)
        name_end = pos + size + _align4(n_namesz)
        if name_end + n_descsz > len(notes):
            break
        if notes[pos + size:pos + size + n_namesz].rstrip(b"\0") == b"VMCOREINFO":
            text = notes[name_end:name_end + n_descsz].decode("ascii", "replace")
            return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        pos = name_end + _align4(n_descsz)
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
