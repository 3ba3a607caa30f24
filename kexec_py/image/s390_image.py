"""The s390 kernel image (Debian's /boot/vmlinuz-*; layout in ``kexec_py.structs.s390``).

It carries no magic number at its start, and kexec-tools takes any file as one. kexec-py
recognises it by content instead:

* probe (the first 64 KiB): an IPL record at offset 0, an ESA/390 PSW whose mask word is
  exactly bit 12 and whose address word is in 31-bit mode and points below 0x10000, followed
  by two read CCWs. Other kernels (bzImage, arm64 Image, ELF, PE) never start like that.
* parse: the file reaches past the parameter area, whose maximum command-line size is 0
  (the legacy 896 bytes) or a plausible size, and, where the kernel has one, the entry
  block "S390EP" at 0x10008. Anything else is refused with one line.

The loader loads the file from 0x10000 on at 0x10000 and writes the initrd's place and
size, the command line and (for a capture kernel) OLDMEM_BASE/OLDMEM_SIZE into the
parameter area of its copy (``S390Image.payload``).
"""

from __future__ import annotations

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.record import REQUIRED, Record
from kexec_py.structs import s390 as S

MAX_PLAUSIBLE_COMMAND_LINE = 1 << 20    # the kernel's CONFIG_COMMAND_LINE_SIZE is 896..a few KiB


class S390Image(Record):
    _defaults = dict(
        path=REQUIRED,
        data=REQUIRED,                  # the whole file (its bytes from 0x10000 on are loaded)
        command_line_size=REQUIRED,     # bytes of the command-line field, NUL included
        default_cmdline=REQUIRED,       # the command line the image carries
        version=None,                   # the kernel version string, when the image points to it
        kdump_entry=False,              # whether the entry block names the kdump entry (0x10010)
    )
    __slots__ = tuple(_defaults)

    @property
    def format(self) -> str:
        return "s390 image"

    @property
    def load_size(self) -> int:
        """Bytes loaded at 0x10000."""
        return len(self.data) - S.IMAGE_START

    def payload(self, *, cmdline: str | None, initrd: tuple[int, int] = (0, 0),
                oldmem: tuple[int, int] | None = None) -> bytearray:
        """The bytes loaded at 0x10000, the parameter area filled in: the initrd's (start,
        size), the command line (None: the image's own stays) and, for a capture kernel,
        OLDMEM_BASE/OLDMEM_SIZE. Raises UsageError for a command line longer than the
        field."""
        from kexec_py.structs.layout import offset_of
        out = bytearray(memoryview(self.data)[S.IMAGE_START:])
        base = S.PARMAREA - S.IMAGE_START

        def put(name: str, value: int) -> None:
            at = base + offset_of(S.parmarea, name)
            out[at:at + 8] = value.to_bytes(8, "big")

        put("initrd_start", initrd[0])
        put("initrd_size", initrd[1])
        if oldmem is not None:
            put("oldmem_base", oldmem[0])
            put("oldmem_size", oldmem[1])
        if cmdline is not None:
            text = cmdline.encode()
            if len(text) > self.command_line_size - 1:
                from kexec_py.errors import UsageError
                raise UsageError(f"the command line is {len(text)} bytes; {self.path} takes at most "
                                 f"{self.command_line_size - 1}", "shorten --append")
            at = S.COMMAND_LINE - S.IMAGE_START
            out[at:at + self.command_line_size] = text.ljust(self.command_line_size, b"\0")
        return out


def looks_like_s390_image(head: bytes) -> bool:
    """The IPL record at offset 0 (``head``: the file's first bytes)."""
    if len(head) < S.ipl_record.sizeof():
        return False
    ipl = S.ipl_record.parse(bytes(head[:S.ipl_record.sizeof()]))
    address = ipl.psw_address & ~S.PSW_31BIT
    return (ipl.psw_mask == S.PSW_ESA390 and ipl.psw_address & S.PSW_31BIT and 0 < address < S.IMAGE_START
            and ipl.ccw1_command == S.CCW_READ and ipl.ccw2_command == S.CCW_READ)


def parse_s390_image(data, *, path: str = "kernel") -> S390Image:
    from construct import ConstructError
    if not looks_like_s390_image(data[:64]):
        raise UnsupportedImage(f"{path} has no s390 IPL record at offset 0", "give an s390 kernel image "
                               "(/boot/vmlinuz-*, arch/s390/boot/bzImage)")
    if len(data) < S.COMMAND_LINE + S.LEGACY_COMMAND_LINE_SIZE:
        raise CorruptImage(f"{path} is {len(data)} bytes, too short for an s390 kernel image's parameter area "
                           f"(which ends at {S.COMMAND_LINE + S.LEGACY_COMMAND_LINE_SIZE:#x})")
    parm = S.parmarea.parse(bytes(data[S.PARMAREA:S.COMMAND_LINE]))
    size = parm.max_command_line_size or S.LEGACY_COMMAND_LINE_SIZE
    if size > MAX_PLAUSIBLE_COMMAND_LINE or S.COMMAND_LINE + size > len(data):
        raise CorruptImage(f"{path}: the s390 parameter area says the command line holds {size:#x} bytes, "
                           f"past what the file holds ({len(data):#x} bytes)")
    field = bytes(data[S.COMMAND_LINE:S.COMMAND_LINE + size])
    try:
        entries = S.entry_block.parse(bytes(data[S.ENTRY_BLOCK:S.ENTRY_BLOCK + S.entry_block.sizeof()])).entries
    except ConstructError:
        entries = None
    return S390Image(path=path, data=data, command_line_size=size,
                     default_cmdline=field.split(b"\0", 1)[0].decode(errors="replace"),
                     version=_string_at(data, parm.kernel_version), kdump_entry=bool(entries))


def _string_at(data, address: int) -> str | None:
    """The NUL-terminated string at ``address`` of the image (loaded at 0), if printable."""
    if not S.IMAGE_START <= address < len(data):
        return None
    raw = bytes(data[address:address + 256]).split(b"\0", 1)[0]
    text = raw.decode("ascii", errors="replace")
    return text if text and text.isprintable() else None
