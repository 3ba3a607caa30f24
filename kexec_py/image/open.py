"""Open a kernel file: read it, undo a whole-file compression, and hand it to the
first image format (of the architecture's list, in order) that recognises it."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence

from kexec_py.errors import ImageError, ImageNotFound, UnknownFormat
from kexec_py.image.decompress import decompress, sniff
from kexec_py.paths import path_text
from kexec_py.record import REQUIRED, Record

MAX_KERNEL_BYTES = 1 << 31


class ImageFormat(Record):
    _defaults = dict(
        name=REQUIRED,
        probe=REQUIRED,                 # Callable[[bytes], bool]
        parse=REQUIRED,                 # parse(data, path=...) -> a KernelImage
    )
    __slots__ = tuple(_defaults)


class KernelFile(Record):
    _defaults = dict(
        path=REQUIRED,                  # the path as kexec_py.plan.plan.path_text gives it
        data=REQUIRED,                  # the file mapped read-only (MappedFile), or its decompressed bytes
        compression=REQUIRED,           # how the file itself was wrapped, or None
    )
    __slots__ = tuple(_defaults)


def read_kernel_file(path: str | Path) -> KernelFile:
    """The kernel file's bytes: mapped, not copied (the pages are the page cache's, and a
    second read of the same file costs nothing), or decompressed when it is wrapped."""
    path = path_text(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_KERNEL_BYTES:
                raise ImageError(f"{path} is larger than 2 GiB", "that is not a kernel")
            raw = _map(f, size)
    except FileNotFoundError:
        raise ImageNotFound(f"{path}: no such file", "check the kernel path") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a directory", "give the kernel file itself") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied", "run as root or fix the file mode") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read: {e.strerror}") from None
    if not raw:
        raise ImageError(f"{path} is empty", "re-copy the kernel file")
    kind = sniff(raw[:16])
    if kind is None:
        return KernelFile(path, raw, None)
    return KernelFile(path, decompress(raw, kind, what=str(path)), kind)


class MappedFile(mmap.mmap):
    """A read-only file mapping that, like bytes, compares equal to the same contents.
    (Slices of it are bytes; ``memoryview(it)`` views it without a copy.)"""

    __slots__ = ()
    __hash__ = None

    def __eq__(self, other):
        try:
            with memoryview(self) as mine, memoryview(other) as theirs:
                return mine == theirs
        except TypeError:
            return NotImplemented


def _map(f, size: int):
    """A read-only mapping of the open file ``f``; its contents read into bytes when it
    cannot be mapped (an empty or special file)."""
    if size:
        try:
            return MappedFile(f.fileno(), size, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            pass
    return f.read()


_mapped: dict[tuple, memoryview] = {}      # the last file map_file mapped, by identity


def map_file(path: str | Path):
    """A file's bytes without a copy: a read-only memory map (an empty file: b"").

    Mapping the same unchanged file again in this process gives the same view, so that
    an initrd whose hashing started early (see cli.py) is recognised when it is loaded."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size == 0:
            return b""
        key = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        view = _mapped.get(key)
        if view is None:
            view = memoryview(mmap.mmap(f.fileno(), st.st_size, prot=mmap.PROT_READ))
            _mapped.clear()
            _mapped[key] = view
        return view


def open_kernel(path: str | Path, formats: Sequence[ImageFormat], *, force: str | None = None):
    """Parse ``path`` with the first format whose probe accepts it (or the one named ``force``)."""
    return parse_kernel(read_kernel_file(path), formats, force=force)


def parse_kernel(kf: KernelFile, formats: Sequence[ImageFormat], *, force: str | None = None):
    head = kf.data[:64 * 1024]
    candidates = [f for f in formats if force in (None, f.name)]
    if force and not candidates:
        names = ", ".join(f.name for f in formats)
        raise UnknownFormat(f"unknown kernel type {force!r}", f"this architecture loads: {names}")
    for fmt in candidates:
        if fmt.probe(head):
            return fmt.parse(kf.data, path=str(kf.path))
    names = ", ".join(f.name for f in formats)
    wrapped = f" (after {kf.compression} decompression)" if kf.compression else ""
    what = describe(head)
    if what:
        raise UnknownFormat(f"{kf.path}{wrapped} is {what}, which this architecture does not load",
                            f"give a kernel built for this machine; supported: {names}")
    raise UnknownFormat(f"{kf.path}: not a kernel image this architecture can load{wrapped}: "
                        f"starts with {kf.data[:8].hex()}", f"supported: {names}")


ELF_MACHINES = {3: "i386", 62: "x86_64", 40: "arm", 183: "arm64", 21: "ppc64", 22: "s390", 243: "riscv"}


def describe(head: bytes) -> str | None:
    """What a kernel of some architecture looks like, for a clear refusal ("an arm64 Image")."""
    if len(head) >= 0x206 and head[0x202:0x206] == b"HdrS":
        return "an x86 bzImage"
    if len(head) >= 0x40 and head[0x38:0x3C] == b"ARM\x64":
        return "an arm64 Image"
    if len(head) >= 0x40 and head[0x24:0x28] == b"\x18\x28\x6f\x01":
        return "an arm zImage"
    from kexec_py.image.s390_image import looks_like_s390_image
    if looks_like_s390_image(head):
        return "an s390 kernel image"
    from kexec_py.image.vmlinux import elf_machine
    machine = elf_machine(head)
    if machine is not None:
        return f"an ELF file for {ELF_MACHINES.get(machine, f'machine {machine}')}"
    machine = _pe_machine(head)
    if machine is not None:
        from kexec_py.structs.pe import MACHINES
        return f"a PE/COFF (EFI) image for {MACHINES.get(machine, f'machine {machine:#x}')}"
    return None


def _pe_machine(head: bytes) -> int | None:
    """The COFF machine of a PE/COFF file, or None."""
    from construct import ConstructError

    from kexec_py.structs import pe
    from kexec_py.structs.layout import read_field
    try:
        read_field(pe.dos_header, "e_magic", head)              # Consts: raise unless "MZ" ...
        lfanew = read_field(pe.dos_header, "e_lfanew", head)
        read_field(pe.coff_header, "signature", head, lfanew)   # ... and "PE\0\0"
        return read_field(pe.coff_header, "machine", head, lfanew)
    except ConstructError:
        return None
