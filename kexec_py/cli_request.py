"""Turning parsed option values into a Request: kexec-tools' validation rules,
number syntax and refusals, kept out of cli.py so that --help imports none of it."""

from __future__ import annotations

from kexec_py.errors import UsageError
from kexec_py.request import Request, X86Options, steps_from_options

X86_ARCHES = ("x86_64", "i386")
SERIAL_PORTS = {"ttyS0": 0x3F8, "ttyS1": 0x2F8}

# option -> why kexec-py refuses it (each also refused, in its own way, by kexec-tools
# on the setups kexec-py supports, or a feature kexec-py leaves out on purpose)
_REFUSED = {
    "reuseinitrd": "--reuseinitrd is not implemented on this architecture",
    "load_preserve_context": "--load-preserve-context (kexec jump) is not supported by kexec-py",
    "load_jump_back_helper": "--load-jump-back-helper (kexec jump) is not supported by kexec-py",
    "exec_live_update": "--exec-live-update needs a Xen dom0",
    "load_live_update": "--load-live-update needs a Xen dom0",
    "module": "--module: multiboot kernels are not supported by kexec-py",
    "real_mode": "--real-mode: kexec-py enters x86 kernels at their 64-bit or 32-bit entry only",
    "entry_32bit": "--entry-32bit is not supported by kexec-py on x86_64",
    "args_elf": "--args-elf (ELF boot notes) is not supported by kexec-py",
}


def refuse_unsupported(v: dict) -> None:
    for name, why in _REFUSED.items():
        if v.get(name):
            raise UsageError(why)


def parse_number(text: str | None, option: str) -> int | None:
    """C strtoul(..., 0) syntax: 0x hex, 0 octal, else decimal."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        if t.startswith("0x"):
            return int(t, 16)
        if len(t) > 1 and t.startswith("0"):
            return int(t, 8)
        return int(t, 10)
    except ValueError:
        raise UsageError(f"{option}: bad number {text!r}", "use decimal or 0x hex") from None


def _serial_port(text: str | None) -> int | None:
    if text is None:
        return None
    if text in SERIAL_PORTS:
        return SERIAL_PORTS[text]
    port = parse_number(text, "--serial")
    if port is None or not 0 < port < 0x10000:
        raise UsageError(f"--serial: {text!r} is not ttyS0, ttyS1 or an I/O port below 0x10000")
    return port


def _x86_options(v: dict) -> X86Options:
    baud = v["serial_baud"]
    if baud is not None and not (9600 <= baud <= 115200 and 115200 % baud == 0):
        raise UsageError(f"--serial-baud: {baud} is not a divisor of 115200 between 9600 and 115200")
    core = 32 if v["elf32_core_headers"] else 64 if v["elf64_core_headers"] else None
    args = "linux" if v["args_linux"] else "none" if v["args_none"] else None
    return X86Options(reset_vga=v["reset_vga"], serial=_serial_port(v["serial"]), serial_baud=baud,
                      console_vga=v["console_vga"], console_serial=v["console_serial"],
                      core_header_class=core, pass_memmap_cmdline=v["pass_memmap_cmdline"],
                      noefi=v["noefi"], reuse_video_type=v["reuse_video_type"], args=args)


def build_request(actions: list[str], v: dict, *, arch: str) -> Request:
    x86 = _x86_options(v)
    if arch not in X86_ARCHES and x86 != X86Options():
        raise UsageError(f"x86 options are not available on {arch}")
    mem_min = parse_number(v["mem_min"], "--mem-min")
    mem_max = parse_number(v["mem_max"], "--mem-max")
    if mem_min is not None and mem_max is not None and mem_min > mem_max:
        raise UsageError(f"--mem-min {mem_min:#x} is above --mem-max {mem_max:#x}")
    steps = steps_from_options(actions, no_sync=v["no_sync"], no_ifdown=v["no_ifdown"])
    return Request(
        steps=steps, kernel=v["kernel"], initrd=v["initrd"], append=v["append"],
        reuse_cmdline=v["reuse_cmdline"], debug=v["debug"], dry_run=v["dry_run"],
        image_type=v["image_type"], no_checks=v["no_checks"],
        mem_min=mem_min or 0, mem_max=(1 << 64) - 1 if mem_max is None else mem_max,
        entry=parse_number(v["entry"], "--entry"), hotplug=v["hotplug"], dtb=v["dtb"],
        no_cma=v["no_cma"], force_dtb=v["force_dtb"], x86=x86)

