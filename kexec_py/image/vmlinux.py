"""ELF kernels (vmlinux): the program headers a kexec_load needs, checked.

The loader only needs the PT_LOAD program headers (where each piece goes in
physical memory and how much of it comes from the file), the entry point and
whether this is a Linux kernel (an "Linux" owner note in a PT_NOTE). pyelftools
reads the headers; it is imported only when an ELF file is actually opened.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.image.elf import elf_errors

ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62
# Physical addresses a kernel may claim: below 64 TiB (x86_64's 46-bit physical
# address space); anything above is a damaged header, not a real layout.
MAX_PHYS = 1 << 46
MAX_IMAGE_SPAN = 1 << 31


@dataclass(frozen=True, slots=True)
class LoadSegment:
    """One PT_LOAD: ``filesz`` bytes at ``offset`` in the file go to ``paddr``;
    the rest of ``memsz`` is zero-filled."""
    paddr: int
    vaddr: int
    memsz: int
    offset: int
    filesz: int

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


@dataclass(frozen=True, slots=True)
class Vmlinux:
    path: str
    data: bytes = None
    machine: int = 0
    entry: int = 0                       # physical address of the entry point
    loads: tuple[LoadSegment, ...] = ()  # sorted by paddr
    is_linux: bool = False               # has a "Linux" ELF note

    format = "vmlinux"
    file_syscall = False                 # kexec_file_load takes no ELF kernel on x86_64

    @property
    def start(self) -> int:
        return self.loads[0].paddr

    @property
    def end(self) -> int:
        return max(s.end for s in self.loads)

    def payload(self, seg: LoadSegment) -> memoryview:
        return memoryview(self.data)[seg.offset:seg.offset + seg.filesz]

    def __repr__(self) -> str:
        return (f"<Vmlinux {self.path} entry={self.entry:#x} {len(self.loads)} PT_LOADs "
                f"{self.start:#x}-{self.end:#x}>")


def looks_like_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def parse_vmlinux(data: bytes, *, path: str, machine: int = EM_X86_64, machine_name: str = "x86_64") -> Vmlinux:
    """Read and check an ELF kernel for ``machine``. Raises CorruptImage / UnsupportedImage."""
    elf = _open_elf(data, path)
    hdr = elf.header
    found = int.from_bytes(data[18:20], "little" if elf.little_endian else "big")
    if found != machine:
        raise UnsupportedImage(f"{path} is an ELF kernel for {hdr.e_machine} (e_machine {found}), "
                               f"not {machine_name}", f"give a {machine_name} kernel")
    if elf.elfclass != 64 or not elf.little_endian:
        raise UnsupportedImage(f"{path} is a {elf.elfclass}-bit {'little' if elf.little_endian else 'big'}"
                               f"-endian ELF file; a {machine_name} kernel is 64-bit little-endian")
    if hdr.e_type != "ET_EXEC":
        raise UnsupportedImage(f"{path} is an ELF {hdr.e_type} file, not an executable kernel (ET_EXEC)",
                               "give the vmlinux itself, not a module or object file")
    loads, is_linux = _program_headers(elf, data, path)
    return Vmlinux(path=path, data=data, machine=found, entry=_physical_entry(hdr.e_entry, loads, path),
                   loads=loads, is_linux=is_linux)


def _open_elf(data: bytes, path: str):
    import io

    from elftools.elf.elffile import ELFFile
    if len(data) < 64:
        raise CorruptImage(f"{path}: truncated ELF header ({len(data)} bytes)", "re-copy the kernel file")
    try:
        return ELFFile(io.BytesIO(data))
    except elf_errors() as e:
        raise CorruptImage(f"{path}: unreadable ELF header ({e})", "re-copy the kernel file") from None


def _program_headers(elf, data: bytes, path: str) -> tuple[tuple[LoadSegment, ...], bool]:
    hdr = elf.header
    if hdr.e_phnum == 0 or hdr.e_phoff + hdr.e_phnum * hdr.e_phentsize > len(data):
        raise CorruptImage(f"{path}: truncated: the program headers ({hdr.e_phnum} at {hdr.e_phoff:#x}) "
                           f"lie beyond the end of the {len(data)}-byte file", "re-copy the kernel file")
    loads, is_linux = [], False
    try:
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]:
                loads.append(LoadSegment(seg["p_paddr"], seg["p_vaddr"], seg["p_memsz"],
                                         seg["p_offset"], seg["p_filesz"]))
            elif seg["p_type"] == "PT_NOTE" and seg["p_offset"] + seg["p_filesz"] <= len(data):
                is_linux = is_linux or any(n["n_name"] == "Linux" for n in seg.iter_notes())
    except elf_errors() as e:
        raise CorruptImage(f"{path}: unreadable program headers ({e})", "re-copy the kernel file") from None
    if not loads:
        raise CorruptImage(f"{path}: an ELF file with no PT_LOAD program header: nothing to load")
    loads.sort(key=lambda s: s.paddr)
    _check_loads(loads, len(data), path)
    return tuple(loads), is_linux


def _check_loads(loads: list[LoadSegment], size: int, path: str) -> None:
    for s in loads:
        where = f"{path}: PT_LOAD at {s.paddr:#x}"
        if s.filesz > s.memsz:
            raise CorruptImage(f"{where} has more file bytes ({s.filesz:#x}) than memory ({s.memsz:#x})")
        if s.offset + s.filesz > size:
            raise CorruptImage(f"{path}: truncated: the PT_LOAD at {s.paddr:#x} needs file bytes up to "
                               f"{s.offset + s.filesz:#x}, the file has {size:#x}", "re-copy the kernel file")
        if s.end > MAX_PHYS:
            raise CorruptImage(f"{where} (+{s.memsz:#x}) is beyond any physical memory")
    for a, b in zip(loads, loads[1:]):
        if b.paddr < a.end:
            raise CorruptImage(f"{path}: PT_LOADs at {a.paddr:#x} (+{a.memsz:#x}) and {b.paddr:#x} overlap")
    span = max(s.end for s in loads) - loads[0].paddr
    if span > MAX_IMAGE_SPAN:
        raise CorruptImage(f"{path}: the PT_LOADs span {span:#x} bytes ({loads[0].paddr:#x}-"
                           f"{loads[-1].end:#x}); no kernel is that large")


def _physical_entry(e_entry: int, loads: tuple[LoadSegment, ...], path: str) -> int:
    """e_entry as a physical address: x86_64 vmlinux files give it physical already
    (phys_startup_64); a virtual one is translated through its PT_LOAD."""
    for s in loads:
        if s.paddr <= e_entry < s.end:
            return e_entry
    for s in loads:
        if s.vaddr <= e_entry < s.vaddr + s.memsz:
            return s.paddr + (e_entry - s.vaddr)
    raise CorruptImage(f"{path}: the entry point {e_entry:#x} is in no PT_LOAD")
