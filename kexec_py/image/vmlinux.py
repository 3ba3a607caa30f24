"""ELF kernels (vmlinux): the program headers a kexec_load needs, checked.

The loader only needs the PT_LOAD program headers (where each piece goes in
memory and how much of it comes from the file), the entry point and whether
this is a Linux kernel (an "Linux" owner note in a PT_NOTE). pyelftools reads
the headers; it is imported only when an ELF file is actually opened.

The ELF header's e_machine says which architecture the kernel is for; every
architecture's loader checks it first (``open_elf_kernel``) and names what it
found when it is not its own. x86_64 vmlinux files place their PT_LOADs by
physical address (``parse_vmlinux``); an arm64 vmlinux is linked at virtual
addresses only and becomes an Image (``kexec_py.image.arm64_image``).
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.image.elf import elf_errors

ELF_MAGIC = b"\x7fELF"
EM_386 = 3
EM_X86_64 = 62
EM_AARCH64 = 183
# e_machine -> (our name for the architecture, the ELF constant's name)
ELF_MACHINES = {
    2: ("sparc", "EM_SPARC"), 3: ("i386", "EM_386"), 8: ("mips", "EM_MIPS"), 20: ("ppc", "EM_PPC"),
    21: ("ppc64", "EM_PPC64"), 22: ("s390x", "EM_S390"), 40: ("arm", "EM_ARM"), 42: ("superh", "EM_SH"),
    43: ("sparc64", "EM_SPARCV9"), 50: ("ia64", "EM_IA_64"), 62: ("x86_64", "EM_X86_64"),
    183: ("arm64", "EM_AARCH64"), 243: ("riscv", "EM_RISCV"), 258: ("loongarch", "EM_LOONGARCH"),
}
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


def elf_machine(data: bytes) -> int | None:
    """e_machine of an ELF file, in the byte order its e_ident says (None if not ELF)."""
    from construct import ConstructError

    from kexec_py.structs import elf as E
    from kexec_py.structs.layout import read_field
    try:
        ident = E.e_ident.parse(bytes(data[:E.EI_NIDENT]))      # a Const: raises unless "\x7fELF"
        byteorder = E.DATA_BYTEORDER[ident.ei_data]
        # e_machine comes before the first word-sized field: the same place in ELF32 and ELF64
        return read_field(E.layouts(E.CLASS_BITS.get(ident.ei_class, 64), byteorder).ehdr, "e_machine", data)
    except (ConstructError, KeyError):
        return None


def describe_machine(e_machine: int) -> str:
    """'arm64 (EM_AARCH64, e_machine 183)', or 'an unknown machine (e_machine N)'."""
    name, const = ELF_MACHINES.get(e_machine, ("an unknown machine", None))
    return f"{name} ({const}, e_machine {e_machine})" if const else f"{name} (e_machine {e_machine})"


def open_elf_kernel(data: bytes, *, path: str, machine: int, machine_name: str,
                    types: tuple[str, ...] = ("ET_EXEC",), bits: int = 64):
    """The pyelftools ELFFile of a ``bits``-bit little-endian kernel for ``machine``, after
    checking e_machine, class, byte order and e_type. Raises CorruptImage / UnsupportedImage."""
    elf = _open_elf(data, path)
    hdr = elf.header
    found = elf_machine(data)
    if found != machine:
        raise UnsupportedImage(f"{path} is an ELF kernel for {describe_machine(found)}, not {machine_name}",
                               f"give the {machine_name} kernel")
    if elf.elfclass != bits or not elf.little_endian:
        raise UnsupportedImage(f"{path} is a {elf.elfclass}-bit {'little' if elf.little_endian else 'big'}"
                               f"-endian ELF file; a {machine_name} kernel is {bits}-bit little-endian")
    if hdr.e_type not in types:
        wanted = " or ".join(types)
        raise UnsupportedImage(f"{path} is an ELF {hdr.e_type} file, not a kernel ({wanted})",
                               "give the vmlinux itself, not a module or object file")
    return elf


def parse_vmlinux(data: bytes, *, path: str, machine: int = EM_X86_64, machine_name: str = "x86_64") -> Vmlinux:
    """Read and check an ELF kernel for ``machine`` whose PT_LOADs carry physical
    addresses (x86). Raises CorruptImage / UnsupportedImage."""
    elf = open_elf_kernel(data, path=path, machine=machine, machine_name=machine_name)
    loads, is_linux = elf_loads(elf, data, path)
    check_loads(loads, len(data), path, by="paddr", limit=MAX_PHYS)
    return Vmlinux(path=path, data=data, machine=machine,
                   entry=_physical_entry(elf.header.e_entry, tuple(loads), path),
                   loads=tuple(loads), is_linux=is_linux)


def _open_elf(data: bytes, path: str):
    import io

    from elftools.elf.elffile import ELFFile
    if len(data) < 64:
        raise CorruptImage(f"{path}: truncated ELF header ({len(data)} bytes)", "re-copy the kernel file")
    try:
        return ELFFile(io.BytesIO(data))
    except elf_errors() as e:
        raise CorruptImage(f"{path}: unreadable ELF header ({e})", "re-copy the kernel file") from None


def elf_loads(elf, data: bytes, path: str) -> tuple[list[LoadSegment], bool]:
    """The non-empty PT_LOADs (sorted by p_paddr) and whether a PT_NOTE holds a
    "Linux" note; checks that the program headers lie inside the file."""
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
    return loads, is_linux


def check_loads(loads: list[LoadSegment], size: int, path: str, *, by: str, limit: int | None) -> None:
    """File bounds, and no overlap or wild address among the PT_LOADs placed by ``by``
    ("paddr" or "vaddr"); ``limit``: the highest address a PT_LOAD may reach."""
    def at(s: LoadSegment) -> int:
        return getattr(s, by)

    loads = sorted(loads, key=at)
    for s in loads:
        where = f"{path}: PT_LOAD at {at(s):#x}"
        if s.filesz > s.memsz:
            raise CorruptImage(f"{where} has more file bytes ({s.filesz:#x}) than memory ({s.memsz:#x})")
        if s.offset + s.filesz > size:
            raise CorruptImage(f"{path}: truncated: the PT_LOAD at {at(s):#x} needs file bytes up to "
                               f"{s.offset + s.filesz:#x}, the file has {size:#x}", "re-copy the kernel file")
        if limit is not None and at(s) + s.memsz > limit:
            raise CorruptImage(f"{where} (+{s.memsz:#x}) is beyond any physical memory")
    for a, b in zip(loads, loads[1:]):
        if at(b) < at(a) + a.memsz:
            raise CorruptImage(f"{path}: PT_LOADs at {at(a):#x} (+{a.memsz:#x}) and {at(b):#x} overlap")
    span = max(at(s) + s.memsz for s in loads) - at(loads[0])
    if span > MAX_IMAGE_SPAN:
        raise CorruptImage(f"{path}: the PT_LOADs span {span:#x} bytes ({at(loads[0]):#x}-"
                           f"{at(loads[0]) + span:#x}); no kernel is that large")


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
