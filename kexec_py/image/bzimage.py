"""The x86 bzImage: a real-mode setup part followed by the protected-mode kernel.

Facts from Documentation/arch/x86/boot.rst: the setup header sits at 0x1f1,
"HdrS" at 0x202 marks protocol 2.00+, ``setup_sects`` 0 means 4, and the
protected-mode part starts at (setup_sects + 1) * 512.
"""

from __future__ import annotations

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.record import REQUIRED, Record


class BzImage(Record):
    _defaults = dict(
        path=REQUIRED,
        data=None,                      # the whole file
        version=0,                      # boot protocol, e.g. 0x020f
        setup_sects=0,
        setup_size=0,                   # bytes of the real-mode part, (setup_sects + 1) * 512
        loadflags=0,
        xloadflags=0,
        relocatable=False,
        kernel_alignment=0,
        min_alignment=0,
        pref_address=0,
        init_size=0,
        cmdline_size=0,
        initrd_addr_max=0,
        header_len=0,                   # setup-header bytes to copy into the zero page
    )
    __slots__ = tuple(_defaults)

    format = "bzImage"

    @property
    def payload(self) -> memoryview:
        """The protected-mode kernel, what gets loaded at the kernel address."""
        return memoryview(self.data)[self.setup_size:]

    @property
    def setup_header(self) -> bytes:
        """The setup header's bytes, as the zero page takes them (from offset 0x1f1)."""
        from kexec_py.structs.fast import SETUP_HEADER_OFFSET
        return bytes(self.data[SETUP_HEADER_OFFSET:SETUP_HEADER_OFFSET + self.header_len])

    def __repr__(self) -> str:
        return (f"<BzImage {self.path} protocol={self.version >> 8}.{self.version & 0xff:02d} "
                f"xloadflags={self.xloadflags:#x} init_size={self.init_size:#x}>")


def looks_like_bzimage(head: bytes) -> bool:
    return len(head) >= 0x206 and head[0x202:0x206] == b"HdrS" and head[0x1FE:0x200] == b"\x55\xaa"


def read_setup_header(data: bytes, *, path: str):
    """The setup header (its fields as attributes) and the size of the real-mode part,
    checked only for what every bzImage must have. Raises CorruptImage.

    Read with the struct form of ``kexec_py.structs.bootparam.setup_header``
    (``kexec_py.structs.fast``, for speed: no construct on the kexec_file_load path)."""
    from kexec_py.structs import fast

    if not looks_like_bzimage(data):
        raise CorruptImage(f"{path} is not a bzImage (no 'HdrS' setup header)")
    if len(data) < 1024:
        raise CorruptImage(f"{path}: truncated: {len(data)} bytes, less than a bzImage's two setup sectors")
    raw = bytes(data[fast.SETUP_HEADER_OFFSET:fast.SETUP_HEADER_OFFSET + fast.SETUP_HEADER.size])
    if len(raw) < fast.SETUP_HEADER.size:
        raise CorruptImage(f"{path}: truncated setup header")
    hdr = SetupHeader(zip(fast.SETUP_HEADER_NAMES, fast.SETUP_HEADER.unpack(raw)))
    setup_size = ((hdr.setup_sects or 4) + 1) * 512
    if setup_size >= len(data):
        raise CorruptImage(f"{path}: truncated: {len(data)} bytes, but the setup part alone claims {setup_size}",
                           "re-copy the kernel file")
    # syssize (32 bits from protocol 2.04): the protected-mode part in 16-byte units,
    # rounded up; a signed kernel carries its signature after it
    if hdr.version >= 0x0204 and len(data) - setup_size + 15 < hdr.syssize * 16:
        raise CorruptImage(f"{path}: truncated: {len(data)} bytes, but its header says the kernel is "
                           f"{setup_size + hdr.syssize * 16}", "re-copy the kernel file")
    return hdr, setup_size


class SetupHeader(dict):
    """The setup header's fields by name, also as attributes (as construct's Container gives them)."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def header_len(data: bytes) -> int:
    """Setup-header bytes to copy into the zero page: up to the end the jump at 0x200 skips."""
    from kexec_py.structs import fast
    at = fast.SETUP_HEADER_OFFSET + fast.SETUP_HEADER_HEADER_AT - 2
    jump = int.from_bytes(data[at:at + 2], "little")       # a short jmp: 0xeb, offset
    return min(fast.SETUP_HEADER_HEADER_AT + (jump >> 8), fast.SETUP_HEADER.size)


def parse_bzimage(data: bytes, *, path: str) -> BzImage:
    """Read and check the setup header for a 64-bit load. Raises CorruptImage / UnsupportedImage."""
    from kexec_py.structs import fast as bp

    hdr, setup_size = read_setup_header(data, path=path)
    if hdr.version < 0x020C:
        raise UnsupportedImage(
            f"{path}: boot protocol {hdr.version >> 8}.{hdr.version & 0xff:02d} is too old for a 64-bit load",
            "kexec-py needs protocol 2.12 or newer (Linux 3.8+)")
    if not hdr.loadflags & bp.LOADED_HIGH:
        raise UnsupportedImage(f"{path}: a zImage that must load at 0x10000, not a bzImage")
    if not hdr.xloadflags & bp.XLF_KERNEL_64:
        raise UnsupportedImage(f"{path}: the kernel has no 64-bit entry point (xloadflags={hdr.xloadflags:#x})",
                               "is this a 32-bit kernel?")
    if hdr.kernel_alignment == 0 or hdr.kernel_alignment & (hdr.kernel_alignment - 1):
        raise CorruptImage(f"{path}: kernel_alignment {hdr.kernel_alignment:#x} is not a power of two")
    payload_len = len(data) - setup_size
    if hdr.init_size < payload_len or hdr.init_size > 1 << 31:
        raise CorruptImage(f"{path}: init_size {hdr.init_size:#x} is impossible for a "
                           f"{payload_len:#x}-byte kernel", "the file is damaged")
    return BzImage(
        path=path, data=data, version=hdr.version, setup_sects=hdr.setup_sects or 4, setup_size=setup_size,
        loadflags=hdr.loadflags, xloadflags=hdr.xloadflags, relocatable=bool(hdr.relocatable_kernel),
        kernel_alignment=hdr.kernel_alignment, min_alignment=hdr.min_alignment,
        pref_address=hdr.pref_address, init_size=hdr.init_size, cmdline_size=hdr.cmdline_size,
        initrd_addr_max=hdr.initrd_addr_max,
        header_len=header_len(data),
    )
