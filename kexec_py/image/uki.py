"""Unified kernel images (UKI): a PE/COFF file (an EFI stub) carrying the kernel
in its ``.linux`` section, and optionally an initrd (``.initrd``), a command line
(``.cmdline``) and the OS release (``.osrel``).

Facts from the UAPI group's UKI specification and the PE/COFF specification. Every
offset read from the file is checked against its size: a damaged image gives a
CorruptImage naming the field, never an exception. A section's length is its
VirtualSize (what the section really holds); SizeOfRawData is rounded up to the
file alignment and carries padding that would break the kernel's signature check.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.errors import CorruptImage, UnsupportedImage


@dataclass(frozen=True, slots=True)
class PeSection:
    name: str
    offset: int             # file offset of the section's bytes
    size: int               # VirtualSize


@dataclass(frozen=True, slots=True)
class Uki:
    path: str
    machine: int                         # COFF machine (0x8664 for x86_64)
    linux: bytes                         # the kernel, as the .linux section holds it
    initrd: bytes | None = None
    cmdline: str | None = None
    osrel: str | None = None
    kernel: object = None                # .linux parsed by the architecture (a BzImage on x86)

    format = "uki"

    def defaults(self, cmdline: str, initrd):
        """The command line and initrd to boot with: the user's, else the UKI's own.

        An empty command line means the user gave none, as systemd-stub treats it;
        an --initrd replaces the embedded one."""
        return (cmdline if cmdline.strip() else (self.cmdline or ""),
                initrd if initrd is not None else self.initrd)

    def __repr__(self) -> str:
        return (f"<Uki {self.path} .linux={len(self.linux):#x} .initrd="
                f"{len(self.initrd) if self.initrd is not None else None} .cmdline={self.cmdline!r}>")


def looks_like_pe(head: bytes) -> bool:
    return len(head) >= 0x40 and head[:2] == b"MZ"


def pe_sections(data: bytes, *, path: str) -> tuple[int, list[PeSection]]:
    """The COFF machine and the section table of a PE file, every offset checked."""
    from construct import ConstError, StreamError

    from kexec_py.structs import pe
    size = len(data)
    try:
        lfanew = pe.dos_header.parse(bytes(data[:pe.DOS_HEADER_SIZE])).e_lfanew
    except (ConstError, StreamError):
        raise CorruptImage(f"{path}: truncated DOS header ({size} bytes)", "re-copy the image") from None
    if lfanew < pe.DOS_HEADER_SIZE or lfanew + pe.COFF_HEADER_SIZE > size:
        raise CorruptImage(f"{path}: e_lfanew {lfanew:#x} points outside the {size:#x}-byte file",
                           "the PE header is damaged; re-copy the image")
    try:
        coff = pe.coff_header.parse(bytes(data[lfanew:lfanew + pe.COFF_HEADER_SIZE]))
    except ConstError:
        raise CorruptImage(f"{path}: no PE signature at e_lfanew {lfanew:#x} (an MZ file that is not PE/COFF)") \
            from None
    table = lfanew + pe.COFF_HEADER_SIZE + coff.size_of_optional_header
    count = coff.number_of_sections
    if count > pe.MAX_SECTIONS or table + count * pe.SECTION_HEADER_SIZE > size:
        raise CorruptImage(f"{path}: the section table ({count} entries at {table:#x}) lies outside the "
                           f"{size:#x}-byte file", "re-copy the image")
    sections = []
    for i in range(count):
        at = table + i * pe.SECTION_HEADER_SIZE
        sections.append(_section(pe.section_header.parse(data[at:at + pe.SECTION_HEADER_SIZE]), size, path))
    return coff.machine, sections


def _section(h, file_size: int, path: str) -> PeSection:
    name = h.name.rstrip(b"\0").decode("ascii", "replace")
    length = h.virtual_size or h.size_of_raw_data
    if length > h.size_of_raw_data:
        raise CorruptImage(f"{path}: section {name} says it holds {length:#x} bytes (VirtualSize) but has only "
                           f"{h.size_of_raw_data:#x} in the file (SizeOfRawData)", "the image is damaged")
    if h.pointer_to_raw_data + length > file_size:
        raise CorruptImage(f"{path}: section {name} ({length:#x} bytes at {h.pointer_to_raw_data:#x}) runs past "
                           f"the end of the {file_size:#x}-byte file", "the image is truncated; re-copy it")
    return PeSection(name, h.pointer_to_raw_data, length)


def parse_uki(data: bytes, *, path: str) -> Uki:
    """The UKI's payload sections. Raises CorruptImage / UnsupportedImage."""
    machine, sections = pe_sections(data, path=path)
    found: dict[str, bytes] = {}
    for s in sections:
        found.setdefault(s.name, bytes(data[s.offset:s.offset + s.size]))
    if ".linux" not in found:
        names = ", ".join(s.name for s in sections) or "none"
        raise UnsupportedImage(f"{path} is a PE/COFF file without a .linux section, not a unified kernel image "
                               f"(sections: {names})", "give a bzImage, a vmlinux or a UKI")
    if not found[".linux"]:
        raise CorruptImage(f"{path}: the .linux section is empty")
    return Uki(path=path, machine=machine, linux=found[".linux"], initrd=found.get(".initrd"),
               cmdline=_text(found.get(".cmdline")), osrel=_text(found.get(".osrel")))


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def machine_name(machine: int) -> str:
    from kexec_py.structs.pe import MACHINES
    return MACHINES.get(machine, f"machine {machine:#x}")


def has_pe_signature(data) -> bool:
    """Whether ``data`` is a PE/COFF image (an EFI-stub bzImage, a UKI) that carries an
    Authenticode signature: a certificate table (data directory 4) inside the file.
    kexec_file_load on a locked-down kernel accepts nothing else (unless IMA
    appraises the file through its security.ima attribute)."""
    from construct import ConstructError

    from kexec_py.structs import pe
    from kexec_py.structs.layout import offset_of, read_field
    view = memoryview(data)
    security = pe.IMAGE_DIRECTORY_ENTRY_SECURITY
    try:
        read_field(pe.dos_header, "e_magic", view)                   # Consts: raise unless "MZ" ...
        lfanew = read_field(pe.dos_header, "e_lfanew", view)
        read_field(pe.coff_header, "signature", view, lfanew)        # ... and "PE\0\0"
        opt = lfanew + pe.COFF_HEADER_SIZE
        plus = read_field(pe.optional_header_pe32plus, "magic", view, opt) == pe.PE32PLUS_MAGIC
        header = pe.optional_header_pe32plus if plus else pe.optional_header_pe32
        if read_field(header, "number_of_rva_and_sizes", view, opt) <= security:
            return False
        at = opt + offset_of(header, "data_directories") + security * pe.data_directory.sizeof()
        cert = pe.data_directory.parse(bytes(view[at:at + pe.data_directory.sizeof()]))
    except ConstructError:                  # not PE/COFF, or a field beyond the end of the file
        return False
    # the certificate table's "virtual address" is a file offset
    return cert.size > 0 and cert.virtual_address + cert.size <= len(view)
