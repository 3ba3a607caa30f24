"""The x86 options (kexec-tools' x86_64 and i386 option tables): what they mean to
kexec-py, read from the parsed command line into one value the x86 planners use.

Light on purpose: the command line is checked before any planner is imported.
"""

from __future__ import annotations

from kexec_py import options
from kexec_py.errors import UsageError
from kexec_py.record import Record

TITLE = options.X86
# the options of this group, as the option table marks them (their keys in the parsed command line)
NAMES = tuple(o.name for o in options.OPTIONS if o.group == "x86")
SERIAL_PORTS = {"ttyS0": 0x3F8, "ttyS1": 0x2F8}
DEFAULT_SERIAL_PORT = 0x3F8            # --console-serial without --serial: ttyS0
UART_CLOCK_BAUD = 115200               # the 8250's base rate: the baud is 115200 / divisor


class X86Options(Record):
    _defaults = dict(
        serial_port=None,                 # purgatory console on this 8250 I/O port (--console-serial)
        serial_baud=None,                 # ... programmed to this rate (--serial-baud); None: as left
        core_header_class=None,           # 32 or 64 (--elf32/64-core-headers); None: automatic
        pass_memmap=False,                # --pass-memmap-cmdline
        noefi=False,                      # --noefi: hand the new kernel no EFI information
        args=None,                        # ELF kernels: "linux" or "none" (--args-*); None: by the image
    )
    __slots__ = tuple(_defaults)


def parse(v: dict) -> X86Options:
    """The x86 options of a parsed command line ``v`` (every key of NAMES present)."""
    baud = v["serial_baud"]
    if baud is not None and not (9600 <= baud <= UART_CLOCK_BAUD and UART_CLOCK_BAUD % baud == 0):
        raise UsageError(f"--serial-baud: {baud} is not a divisor of 115200 between 9600 and 115200")
    port = _serial_port(v["serial"])
    if v["console_serial"] and port is None:
        port = DEFAULT_SERIAL_PORT
    return X86Options(
        serial_port=port if v["console_serial"] else None,
        serial_baud=baud if v["console_serial"] else None,
        core_header_class=32 if v["elf32_core_headers"] else 64 if v["elf64_core_headers"] else None,
        pass_memmap=v["pass_memmap_cmdline"], noefi=v["noefi"],
        args="linux" if v["args_linux"] else "none" if v["args_none"] else None)


def _serial_port(text: str | None) -> int | None:
    if text is None:
        return None
    if text in SERIAL_PORTS:
        return SERIAL_PORTS[text]
    from kexec_py.request import parse_number
    port = parse_number(text, "--serial")
    if port is None or not 0 < port < 0x10000:
        raise UsageError(f"--serial: {text!r} is not ttyS0, ttyS1 or an I/O port below 0x10000")
    return port
