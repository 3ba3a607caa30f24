"""The bad-input table: every way a user, a broken file or a strange system can
feed kexec-py something wrong, run through the real CLI entry point.

Each case runs ``kexec_py.cli.main`` in this process against a recording backend
(real syscalls are made impossible, see ``no_real_syscalls``) and a system
snapshot from tests/fixtures/systems, and asserts:

* exactly one line on stderr, naming the input (file, /proc or /sys path, option)
  and saying how to fix it;
* the exit code given in the table (kexec-tools' scheme, see man/kexec-py.8,
  EXIT STATUS): 1 bad input found before any system call, 253 no
  kexec_file_load, 254 a crash region that cannot be described, 255 the kernel
  refuses (or would refuse) the call;
* no traceback (an exception other than SystemExit fails the test);
* no system call recorded, except for the few cases whose point is a syscall
  (lockdown: exactly the fallback to kexec_file_load).

A few cases that need a real process (no CAP_SYS_BOOT, an unreadable file) run
the CLI as a subprocess under ``setpriv``, behind the syscall guard.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tests import guard
from tests.conftest import SYSTEMS
from tests.image.kernels import build_uki
from tests.image.test_arm64_image import make_image, make_zboot

X86_ROOT = "x86_64-qemu-2cpu"          # crash region 0x2f000000-0x46ffffff (384 MiB)
ARM64_ROOT = "arm64-qemu-2cpu"
MiB = 1 << 20
GiB = 1 << 30

EXIT_FATAL, EXIT_NO_FILE_SYSCALL, EXIT_NO_CRASH_KERNEL, EXIT_REFUSED = 1, 253, 254, 255


# --- building bad files ---------------------------------------------------------------------

def patched(data: bytes, **fields) -> bytes:
    """``data`` with little-endian integers written at offsets: name=(offset, size, value)."""
    b = bytearray(data)
    for offset, size, value in fields.values():
        b[offset:offset + size] = value.to_bytes(size, "little")
    return bytes(b)


def make_elf(loads, *, machine=62, elf_class=2, e_type=2, entry=None, linux_note=True, big_endian=False) -> bytes:
    """An ELF64 file: one PT_LOAD per (paddr, memsz, data), and a PT_NOTE with a
    "Linux" note. Enough for kexec-py's vmlinux reader; not a bootable kernel."""
    order = ">" if big_endian else "<"
    note = struct.pack(order + "III", 6, 4, 0) + b"Linux\0\0\0" + b"\0" * 4 if linux_note else b""
    phnum = len(loads) + (1 if linux_note else 0)
    offset = 64 + 56 * phnum
    phdrs, body = b"", b""
    if linux_note:
        phdrs += struct.pack(order + "IIQQQQQQ", 4, 4, offset, 0, 0, len(note), len(note), 4)
        body += note
    for paddr, memsz, data in loads:
        at = offset + len(body)
        phdrs += struct.pack(order + "IIQQQQQQ", 1, 7, at, paddr | 0xFFFFFFFF80000000, paddr, len(data), memsz,
                             0x1000)
        body += data
    ident = b"\x7fELF" + bytes([elf_class, 2 if big_endian else 1, 1]) + bytes(9)
    entry = loads[0][0] if entry is None else entry
    header = ident + struct.pack(order + "HHIQQQIHHHHHH", e_type, machine, 1, entry, 64, 0, 0, 64, 56, phnum,
                                 64, 0, 0)
    return header + phdrs + body


GOOD_ELF_LOADS = [(16 * MiB, 4 * MiB, b"\x90" * 4096)]


@dataclass
class Env:
    """What a case's builders get: a scratch directory and the real Debian bzImage."""
    tmp: Path
    bz: bytes

    def write(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)

    def sparse(self, name: str, size: int) -> str:
        path = self.tmp / name
        with open(path, "wb") as f:
            f.truncate(size)
        return str(path)

    def bz_patched(self, name: str, **fields) -> str:
        return self.write(name, patched(self.bz, **fields))


@dataclass
class Case:
    id: str
    args: list[str]                              # "{kernel}", "{initrd}", "{file}" are filled in
    code: int
    names: str                                   # the input the message must name ("{kernel}" etc. allowed)
    fix: str                                     # words of the fix the message must give
    files: dict[str, Callable[[Env], str]] = field(default_factory=dict)
    root: str = X86_ROOT
    tweak: Callable[[Path], None] | None = None  # edits a copy of the snapshot
    arch: str = "x86_64"
    fail: dict[str, list[str]] = field(default_factory=dict)   # errnos the recorder raises, per call
    calls: list[str] = field(default_factory=list)             # calls the recorder must see, in order
    stderr_lines: int = 1


def bz(**fields):
    return lambda env: env.bz_patched("bzImage", **fields)


def elf(*loads, **kw):
    return lambda env: env.write("vmlinux", make_elf(list(loads) or GOOD_ELF_LOADS, **kw))


def raw(data: bytes | Callable[[bytes], bytes], name: str = "kernel"):
    return lambda env: env.write(name, data(env.bz) if callable(data) else data)


def flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    for i in range(at, min(at + 64, len(b))):
        b[i] ^= 0x5A
    return bytes(b)


def uki(*sections, machine=None, cut=None):
    def build(env):
        secs = [(name, env.bz if data is None else data) for name, data in sections]
        data = build_uki(secs) if machine is None else build_uki(secs, machine=machine)
        return env.write("linux.efi", data[:cut] if cut else data)
    return build


def drop_lines(path: str, word: str):
    def tweak(root: Path):
        f = root / path.lstrip("/")
        f.write_text("".join(line for line in f.read_text().splitlines(True) if word not in line))
    return tweak


def write_file(path: str, text: str | bytes):
    def tweak(root: Path):
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text.encode() if isinstance(text, str) else text)
    return tweak


def remove(*paths: str):
    def tweak(root: Path):
        for path in paths:
            f = root / path.lstrip("/")
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    return tweak


def both(*tweaks):
    def tweak(root: Path):
        for t in tweaks:
            t(root)
    return tweak


def zero_addresses(root: Path):
    """/proc/iomem as a user without CAP_SYS_ADMIN reads it: every address 0."""
    import re
    f = root / "proc/iomem"
    f.write_text(re.sub(r"[0-9a-f]+-[0-9a-f]+ :", "00000000-00000000 :", f.read_text()))


KERNEL = "{kernel}"
LONG = "x" * 3000
P = ["-p"]


CASES = [
    # -- the kernel file itself ----------------------------------------------------------------
    Case("kernel-missing", P + ["/nonexistent/vmlinuz"], EXIT_FATAL, "/nonexistent/vmlinuz", "check the kernel path"),
    Case("kernel-is-directory", P + ["{kernel}"], EXIT_FATAL, KERNEL, "give the kernel file itself",
         files={"kernel": lambda env: str(env.tmp)}),
    Case("kernel-is-fifo", P + ["{kernel}"], EXIT_FATAL, KERNEL, "give the kernel file itself",
         files={"kernel": lambda env: (os.mkfifo(env.tmp / "fifo"), str(env.tmp / "fifo"))[1]}),
    Case("kernel-empty", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy", files={"kernel": raw(b"")}),
    Case("kernel-garbage", P + ["{kernel}"], EXIT_FATAL, KERNEL, "supported:",
         files={"kernel": raw(bytes(range(256)) * 64)}),
    Case("kernel-text-file", P + ["{kernel}"], EXIT_FATAL, KERNEL, "supported:",
         files={"kernel": raw(b"#!/bin/sh\necho this is not a kernel\n")}),
    # -- bzImage ------------------------------------------------------------------------------
    Case("bzimage-truncated-in-setup", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: b[:0x1800])}),
    Case("bzimage-truncated-in-payload", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: b[:len(b) // 2])}),
    Case("bzimage-truncated-file-syscall", P + ["-s", "{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: b[:len(b) // 2])}),
    Case("bzimage-header-only", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: b[:0x260])}),
    Case("bzimage-absurd-setup-sects", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: patched(b[:64 * 1024], setup_sects=(0x1F1, 1, 255)))}),
    Case("bzimage-absurd-init-size", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": bz(init_size=(0x260, 4, 0xFFFFF000))}),
    Case("bzimage-init-size-smaller-than-payload", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": bz(init_size=(0x260, 4, 0x1000))}),
    Case("bzimage-bad-kernel-alignment", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": bz(kernel_alignment=(0x230, 4, 0x123457))}),
    Case("bzimage-old-protocol", P + ["{kernel}"], EXIT_FATAL, KERNEL, "Linux 3.8",
         files={"kernel": bz(version=(0x206, 2, 0x0202))}),
    Case("bzimage-zimage", P + ["{kernel}"], EXIT_FATAL, KERNEL, "bzImage",
         files={"kernel": bz(loadflags=(0x211, 1, 0))}),
    Case("bzimage-32-bit-only", P + ["{kernel}"], EXIT_FATAL, KERNEL, "32-bit kernel",
         files={"kernel": bz(xloadflags=(0x236, 2, 0))}),
    Case("bzimage-not-above-4g-file-syscall", P + ["-s", "{kernel}"], EXIT_NO_FILE_SYSCALL, KERNEL, "-c",
         files={"kernel": bz(xloadflags=(0x236, 2, 0x7D))}),
    Case("bzimage-tiny-cmdline-size", P + ["{kernel}", "--append", "console=ttyS0 irqpoll nr_cpus=1"],
         EXIT_FATAL, KERNEL, "shorten --append", files={"kernel": bz(cmdline_size=(0x238, 4, 16))}),
    Case("cmdline-over-limit", P + ["-c", "{kernel}", "--append", LONG], EXIT_FATAL, KERNEL, "shorten --append"),
    Case("cmdline-over-limit-file-syscall", P + ["-s", "{kernel}", "--append", LONG], EXIT_FATAL, KERNEL,
         "shorten --append"),
    Case("cmdline-just-over-limit-file-syscall", P + ["-s", "{kernel}", "--append", "y" * 2020], EXIT_FATAL,
         KERNEL, "shorten --append"),
    # -- ELF vmlinux ----------------------------------------------------------------------------
    Case("elf-truncated-header", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: make_elf(GOOD_ELF_LOADS)[:40])}),
    Case("elf-truncated-program-headers", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: make_elf(GOOD_ELF_LOADS)[:100])}),
    Case("elf-truncated-segment-data", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: make_elf(GOOD_ELF_LOADS)[:-1000])}),
    Case("elf-overlapping-segments", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": elf((16 * MiB, 4 * MiB, b"a" * 4096), (18 * MiB, 4 * MiB, b"b" * 4096))}),
    Case("elf-segment-beyond-physical-memory", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": elf((1 << 50, 4 * MiB, b"a" * 4096))}),
    Case("elf-segments-span-too-much", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": elf((16 * MiB, MiB, b"a"), (16 * MiB + 3 * GiB, MiB, b"b"))}),
    Case("elf-larger-than-crash-region", P + ["{kernel}"], EXIT_FATAL, KERNEL, "crashkernel=",
         files={"kernel": elf((16 * MiB, 512 * MiB, b"a" * 4096))}),
    Case("elf-too-many-segments", P + ["{kernel}"], EXIT_FATAL, KERNEL, "at most 16",
         files={"kernel": elf(*[(16 * MiB + i * 2 * MiB, 4096, b"s") for i in range(20)])}),
    Case("elf-filesz-over-memsz", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": elf((16 * MiB, 16, b"a" * 4096))}),
    Case("elf-entry-outside-segments", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": elf(*GOOD_ELF_LOADS, entry=0x12345678)}),
    Case("elf-no-load-segments", P + ["{kernel}"], EXIT_FATAL, KERNEL, "damaged",
         files={"kernel": elf((16 * MiB, 0, b""))}),
    Case("elf-wrong-architecture", P + ["{kernel}"], EXIT_FATAL, KERNEL, "give the x86_64",
         files={"kernel": elf(*GOOD_ELF_LOADS, machine=183)}),
    Case("elf-32-bit", P + ["{kernel}"], EXIT_FATAL, KERNEL, "64-bit",
         files={"kernel": elf(*GOOD_ELF_LOADS, elf_class=1)}),
    Case("elf-big-endian", P + ["{kernel}"], EXIT_FATAL, KERNEL, "little-endian",
         files={"kernel": elf(*GOOD_ELF_LOADS, big_endian=True)}),
    Case("elf-object-file", P + ["{kernel}"], EXIT_FATAL, KERNEL, "vmlinux itself",
         files={"kernel": elf(*GOOD_ELF_LOADS, e_type=1)}),
    Case("elf-not-linux", P + ["{kernel}"], EXIT_FATAL, KERNEL, "--args-none",
         files={"kernel": elf(*GOOD_ELF_LOADS, linux_note=False)}),
    Case("elf-file-syscall-only", P + ["-s", "{kernel}"], EXIT_NO_FILE_SYSCALL, KERNEL, "-c",
         files={"kernel": elf()}),
    # -- compressed kernels --------------------------------------------------------------------
    Case("gzip-truncated", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: gzip.compress(b[:256 * 1024], 1)[:30000])}),
    Case("gzip-corrupt", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: flip(gzip.compress(b[:256 * 1024], 1), 5000))}),
    Case("gzip-of-garbage", P + ["{kernel}"], EXIT_FATAL, KERNEL, "supported:",
         files={"kernel": raw(gzip.compress(b"not a kernel at all" * 100))}),
    Case("xz-truncated", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: lzma.compress(b[:256 * 1024], preset=0)[:20000])}),
    Case("xz-corrupt", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: flip(lzma.compress(b[:256 * 1024], preset=0), 3000))}),
    Case("lzma-corrupt", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: flip(lzma.compress(b[:64 * 1024], format=lzma.FORMAT_ALONE), 500))}),
    Case("bzip2-truncated", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: bz2.compress(b[:64 * 1024])[:5000])}),
    Case("zstd-truncated", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(lambda b: _zstd(b[:256 * 1024])[:20000])}),
    Case("zstd-corrupt", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 8)}),
    # -- unified kernel images ------------------------------------------------------------------
    Case("uki-truncated", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": uki((".linux", None), cut=200_000)}),
    Case("uki-no-linux-section", P + ["{kernel}"], EXIT_FATAL, KERNEL, "give a bzImage",
         files={"kernel": uki((".cmdline", b"console=ttyS0"))}),
    Case("uki-for-arm64", P + ["{kernel}"], EXIT_FATAL, KERNEL, "x86_64 build",
         files={"kernel": uki((".linux", None), machine=0xAA64)}),
    Case("uki-linux-not-a-bzimage", P + ["{kernel}"], EXIT_FATAL, KERNEL, "bzImage",
         files={"kernel": uki((".linux", b"\0" * 8192))}),
    Case("pe-without-pe-signature", P + ["{kernel}"], EXIT_FATAL, KERNEL, "PE/COFF",
         files={"kernel": raw(b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x80) + b"\0" * 0x200)}),
    Case("pe-lfanew-outside-file", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x7FFFFFF0) + b"\0" * 0x200)}),
    # -- arm64 Image files ------------------------------------------------------------------------
    Case("arm64-image-on-x86_64", P + ["{kernel}"], EXIT_FATAL, KERNEL, "arm64",
         files={"kernel": raw(make_image(efi=False))}),
    Case("arm64-image-bad-text-offset", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(make_image(text_offset=0x123))}, root=ARM64_ROOT, arch="arm64"),
    Case("arm64-image-size-too-small", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(make_image(image_size=4096, size=MiB))}, root=ARM64_ROOT, arch="arm64"),
    Case("arm64-image-big-endian", P + ["{kernel}"], EXIT_FATAL, KERNEL, "little-endian",
         files={"kernel": raw(make_image(flags=0b1011))}, root=ARM64_ROOT, arch="arm64"),
    Case("arm64-bzimage-on-arm64", P + ["{kernel}"], EXIT_FATAL, KERNEL, "x86",
         files={"kernel": raw(lambda b: b)}, root=ARM64_ROOT, arch="arm64"),
    Case("arm64-zboot-payload-outside-file", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(patched(make_zboot(gzip.compress(make_image()), b"gzip"),
                                      size=(0x0C, 4, 0x7FFFFFFF)))}, root=ARM64_ROOT, arch="arm64"),
    Case("arm64-zboot-lz4", P + ["{kernel}"], EXIT_FATAL, KERNEL, "pass its Image",
         files={"kernel": raw(make_zboot(b"\x04\x22\x4d\x18" + bytes(100), b"lz4"))}, root=ARM64_ROOT,
         arch="arm64"),
    Case("arm64-zboot-corrupt-payload", P + ["{kernel}"], EXIT_FATAL, KERNEL, "re-copy",
         files={"kernel": raw(make_zboot(flip(gzip.compress(make_image()), 100), b"gzip"))}, root=ARM64_ROOT,
         arch="arm64"),
    Case("arm64-dtb-garbage", P + ["-c", "{kernel}", "--dtb", "{dtb}"], EXIT_FATAL, "{dtb}", "device tree",
         files={"kernel": raw(make_image()), "dtb": lambda env: env.write("board.dtb", b"\xd0\x0d\xfe\xed" +
                                                                         bytes(60))},
         root=ARM64_ROOT, arch="arm64"),
    Case("arm64-dtb-missing", P + ["-c", "{kernel}", "--dtb", "/nonexistent/board.dtb"], EXIT_FATAL,
         "/nonexistent/board.dtb", "path", files={"kernel": raw(make_image())}, root=ARM64_ROOT, arch="arm64"),
    Case("arm64-no-device-tree", P + ["-c", "{kernel}"], EXIT_FATAL, "/sys/firmware/fdt", "--dtb",
         files={"kernel": raw(make_image())}, root=ARM64_ROOT, arch="arm64",
         tweak=remove("/sys/firmware/fdt", "/proc/device-tree")),
    # -- the initrd ------------------------------------------------------------------------------
    Case("initrd-missing", P + ["{kernel}", "--initrd", "/nonexistent/initrd.img"], EXIT_FATAL,
         "/nonexistent/initrd.img", "check the initrd path"),
    Case("initrd-is-directory", P + ["{kernel}", "--initrd", "{initrd}"], EXIT_FATAL, "{initrd}",
         "give the initrd file itself", files={"initrd": lambda env: str(env.tmp)}),
    Case("initrd-larger-than-crash-region", P + ["-c", "{kernel}", "--initrd", "{initrd}"], EXIT_FATAL,
         "{initrd}", "crashkernel=", files={"initrd": lambda env: env.sparse("big.img", GiB)}),
    Case("initrd-larger-than-crash-region-file-syscall", P + ["-s", "{kernel}", "--initrd", "{initrd}"],
         EXIT_FATAL, "{initrd}", "crashkernel=", files={"initrd": lambda env: env.sparse("big.img", GiB)}),
    Case("initrd-fills-crash-region-file-syscall", P + ["-s", "{kernel}", "--initrd", "{initrd}"],
         EXIT_FATAL, "{initrd}", "crashkernel=", files={"initrd": lambda env: env.sparse("big.img", 360 * MiB)}),
    Case("initrd-empty-file-syscall", P + ["-s", "{kernel}", "--initrd", "{initrd}"], EXIT_FATAL, "{initrd}",
         "drop --initrd", files={"initrd": lambda env: env.write("empty.img", b"")}),
    Case("initrd-over-4g", P + ["-s", "{kernel}", "--initrd", "{initrd}"], EXIT_FATAL, "{initrd}",
         "crashkernel=", files={"initrd": lambda env: env.sparse("huge.img", 5 * GiB)}),
    # -- the system: /proc and /sys -------------------------------------------------------------
    Case("no-crash-kernel-in-iomem", P + ["{kernel}"], EXIT_FATAL, "/proc/iomem", "crashkernel=",
         tweak=drop_lines("/proc/iomem", "Crash kernel")),
    Case("no-crash-kernel-unload", ["-u", "-p"], EXIT_FATAL, "/proc/iomem", "crashkernel=",
         tweak=drop_lines("/proc/iomem", "Crash kernel")),
    Case("iomem-garbage", P + ["{kernel}"], EXIT_FATAL, "/proc/iomem", "real /proc/iomem",
         tweak=write_file("/proc/iomem", "hello world\nthis is not iomem\n")),
    Case("iomem-binary", P + ["{kernel}"], EXIT_FATAL, "/proc/iomem", "real /proc/iomem",
         tweak=write_file("/proc/iomem", bytes(range(256)))),
    Case("iomem-range-backwards", P + ["{kernel}"], EXIT_FATAL, "/proc/iomem", "mounted",
         tweak=write_file("/proc/iomem", "00100000-0009ffff : System RAM\n")),
    Case("iomem-addresses-hidden", P + ["{kernel}"], EXIT_FATAL, "/proc/iomem", "run as root",
         tweak=zero_addresses),
    Case("iomem-missing", P + ["{kernel}"], EXIT_FATAL, "/proc/iomem", "mounted",
         tweak=remove("/proc/iomem")),
    Case("crash-notes-missing", P + ["-c", "{kernel}"], EXIT_FATAL, "crash_notes", "CONFIG_CRASH_DUMP",
         tweak=remove("/sys/devices/system/cpu/cpu0/crash_notes", "/sys/devices/system/cpu/cpu1/crash_notes")),
    Case("crash-notes-garbage", P + ["-c", "{kernel}"], EXIT_FATAL, "crash_notes", "mounted",
         tweak=write_file("/sys/devices/system/cpu/cpu0/crash_notes", "zzz\n")),
    Case("possible-cpus-garbage", P + ["-c", "{kernel}"], EXIT_FATAL, "/sys/devices/system/cpu/possible",
         "mounted", tweak=write_file("/sys/devices/system/cpu/possible", "0-x\n")),
    Case("vmcoreinfo-missing", P + ["-c", "{kernel}"], EXIT_FATAL, "/sys/kernel/vmcoreinfo", "CONFIG_CRASH_DUMP",
         tweak=remove("/sys/kernel/vmcoreinfo")),
    Case("vmcoreinfo-garbage", P + ["-c", "{kernel}"], EXIT_FATAL, "/sys/kernel/vmcoreinfo", "mounted",
         tweak=write_file("/sys/kernel/vmcoreinfo", "nonsense\n")),
    Case("memmap-garbage", ["-l", "-c", "{kernel}"], EXIT_FATAL, "/sys/firmware/memmap/0/start", "mounted",
         tweak=write_file("/sys/firmware/memmap/0/start", "0xzz\n")),
    Case("crash-region-too-small", P + ["-c", "{kernel}"], EXIT_FATAL, "crashkernel=", "crashkernel=",
         tweak=write_file("/proc/iomem", "00001000-0009fbff : System RAM\n00100000-5ffdffff : System RAM\n"
                                         "  2f000000-2f0fffff : Crash kernel\n")),
    Case("hotplug-without-kernel-support", P + ["-c", "--hotplug", "{kernel}"], EXIT_FATAL,
         "/sys/kernel/crash_elfcorehdr_size", "drop --hotplug"),
    # -- permissions, lockdown, disabled kexec ---------------------------------------------------
    Case("kexec-load-disabled", P + ["{kernel}"], EXIT_REFUSED, "/proc/sys/kernel/kexec_load_disabled",
         "reboot", tweak=write_file("/proc/sys/kernel/kexec_load_disabled", "1\n")),
    Case("kexec-load-disabled-unload", ["-p", "-u"], EXIT_REFUSED, "/proc/sys/kernel/kexec_load_disabled",
         "reboot", tweak=write_file("/proc/sys/kernel/kexec_load_disabled", "1\n")),
    Case("kexec-load-limit-used-up", P + ["{kernel}"], EXIT_REFUSED, "/proc/sys/kernel/kexec_load_limit_panic",
         "reboot", tweak=write_file("/proc/sys/kernel/kexec_load_limit_panic", "0\n")),
    Case("lockdown-kexec-load-falls-back", P + ["-c", "{kernel}"], 0, "locked down", "kexec_file_load",
         tweak=write_file("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
         fail={"kexec_load": ["EPERM"]}, calls=["kexec_file_load"]),
    Case("lockdown-confidentiality-falls-back", P + ["-c", "{kernel}"], 0, "confidentiality", "kexec_file_load",
         tweak=write_file("/sys/kernel/security/lockdown", "none integrity [confidentiality]\n"),
         fail={"kexec_load": ["EPERM"]}, calls=["kexec_file_load"]),
    Case("eperm-from-kexec-load-falls-back", P + ["-c", "{kernel}"], 0, "kexec_load", "kexec_file_load",
         tweak=remove("/sys/kernel/security/lockdown"), fail={"kexec_load": ["EPERM"]},
         calls=["kexec_load", "kexec_file_load"]),
    Case("lockdown-vmlinux-cannot-fall-back", P + ["-c", "{kernel}"], EXIT_REFUSED, KERNEL, "signed bzImage",
         files={"kernel": elf()},
         tweak=write_file("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")),
    Case("lockdown-unsigned-kernel", P + ["-s", "{kernel}"], EXIT_REFUSED, KERNEL, "signed",
         files={"kernel": bz(cert_table_size=(0xEC, 4, 0))},
         tweak=write_file("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")),
    Case("lockdown-unsigned-kernel-kexec-load", P + ["-c", "{kernel}"], EXIT_REFUSED, KERNEL, "signed",
         files={"kernel": bz(cert_table_size=(0xEC, 4, 0))},
         tweak=write_file("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")),
    Case("lockdown-unload-uses-file-syscall", ["-p", "-u", "-c"], 0, "locked down", "kexec_file_load",
         tweak=write_file("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
         calls=["kexec_file_load"]),
    Case("kernel-refuses-crash-reload", P + ["-c", "{kernel}"], EXIT_REFUSED, "kexec_load",
         "NO crash kernel is loaded now", fail={"kexec_load": ["EADDRNOTAVAIL"]}, calls=["kexec_load"],
         tweak=write_file("/sys/kernel/kexec_crash_loaded", "0\n")),
    Case("kernel-refuses-but-keeps-crash-kernel", P + ["-c", "{kernel}"], EXIT_REFUSED, "kexec_load",
         "the crash kernel loaded before is still loaded", fail={"kexec_load": ["EBUSY"]}, calls=["kexec_load"],
         tweak=write_file("/sys/kernel/kexec_crash_loaded", "1\n")),
    Case("kernel-refuses-crash-state-unknown", P + ["-c", "{kernel}"], EXIT_REFUSED, "kexec_load",
         "kexec-py -S", fail={"kexec_load": ["EINVAL"]}, calls=["kexec_load"],
         tweak=remove("/sys/kernel/kexec_crash_loaded")),
    Case("eperm-unload-falls-back", ["-p", "-u", "-c"], 0, "kexec_load", "kexec_file_load",
         tweak=remove("/sys/kernel/security/lockdown"), fail={"kexec_load": ["EPERM"]},
         calls=["kexec_load", "kexec_file_load"]),
    Case("kernel-refuses-crash-reload-file-syscall", P + ["-s", "{kernel}"], EXIT_REFUSED, "kexec_file_load",
         "NO crash kernel is loaded now", fail={"kexec_file_load": ["ENOMEM"]}, calls=["kexec_file_load"],
         tweak=write_file("/sys/kernel/kexec_crash_loaded", "0\n")),
    # -- options ----------------------------------------------------------------------------------
    Case("no-kernel-given", ["-p"], EXIT_REFUSED, "kernel", "give the kernel file"),
    Case("unknown-type", P + ["-t", "floppy", "{kernel}"], EXIT_FATAL, "floppy", "bzImage64"),
    Case("bad-mem-min", P + ["--mem-min", "lots", "{kernel}"], EXIT_FATAL, "--mem-min", "0x hex"),
    Case("mem-min-above-mem-max", P + ["--mem-min", "0x2000000", "--mem-max", "0x1000000", "{kernel}"],
         EXIT_FATAL, "--mem-min", "--mem-max"),
    Case("initrd-without-load", ["-u", "--initrd", "/boot/initrd.img"], EXIT_FATAL, "--initrd", "add -l or -p"),
    Case("dtb-on-x86_64", P + ["-c", "--dtb", "/boot/board.dtb", "{kernel}"], EXIT_FATAL, "--dtb", "x86_64"),
    Case("exec-with-nothing-loaded", ["-e"], EXIT_FATAL, "Nothing has been loaded", "load a kernel with -l"),
    Case("args-elf", P + ["--args-elf", "{kernel}"], EXIT_FATAL, "--args-elf", "not supported"),
    Case("file-syscall-on-i386", P + ["-s", "{kernel}"], EXIT_NO_FILE_SYSCALL, "kexec_file_load", "-c",
         root="i386-qemu-1cpu", arch="i386"),
]


def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(level=1).compress(data)


def test_the_table_covers_every_exit_status_arch_and_syscall_path():
    """Not a size: every refusal exit status (1 before any call, 253 no kexec_file_load, 255
    the kernel refused or would), every supported x86/arm64 arch, refusals with no call at
    all and ones after a recorded call, each id once."""
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.code for c in CASES} >= {1, 253, 255}
    assert {c.arch for c in CASES} >= {"x86_64", "i386", "arm64"}
    assert any(not c.calls for c in CASES) and any(c.calls for c in CASES)
    assert any(c.fail for c in CASES), "some cases must have the kernel refuse a call"


# --- running the CLI in this process, with no way to reach a real syscall ---------------------

@pytest.fixture
def no_real_syscalls(monkeypatch):
    """Make the real syscall path fail the test (it never runs here, but if a bug routed
    a call past the recorder, it must not reach the kernel)."""
    from kexec_py.submit import backends, syscalls

    def refuse(*args, **kwargs):
        raise AssertionError("a real kexec syscall was attempted")
    monkeypatch.setattr(syscalls, "_call", refuse)
    for name in ("kexec_load", "kexec_file_load", "reboot_kexec", "sync", "ifdown", "shutdown"):
        monkeypatch.setattr(backends.SyscallBackend, name, refuse)


def run_cli(argv: list[str], monkeypatch, capsys, *, fail: dict[str, list[str]] | None = None):
    """Run kexec-py's CLI entry in this process; returns (exit code, stdout, stderr, recorded calls)."""
    import errno

    from kexec_py import cli
    from kexec_py.submit import backends

    recorder = backends.RecordingBackend("?", fail={call: [getattr(errno, e) for e in errnos]
                                                    for call, errnos in (fail or {}).items()})

    def backend_for(arch, *, dry_run=False):
        recorder.arch = arch
        return recorder
    monkeypatch.setattr(backends, "backend_for", backend_for)
    monkeypatch.delenv("KEXEC_PY_RECORD", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err, recorder.calls


@pytest.fixture(scope="module")
def debian_bz(debian_kernel) -> bytes:
    return debian_kernel.read_bytes()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys, no_real_syscalls, debian_kernel, debian_bz):
    env = Env(tmp_path, debian_bz)
    paths = {"kernel": str(debian_kernel), "initrd": "", "dtb": ""}
    for name, build in case.files.items():
        paths[name] = build(env)
    root = SYSTEMS / case.root
    if case.tweak:
        root = tmp_path / "root"
        shutil.copytree(SYSTEMS / case.root, root)
        case.tweak(root)
    argv = ["--root", str(root), "--arch", case.arch] + [a.format(**paths) for a in case.args]
    code, out, err, calls = run_cli(argv, monkeypatch, capsys, fail=case.fail)
    lines = err.splitlines()
    assert "Traceback" not in err + out
    assert len(lines) == case.stderr_lines, f"stderr must be {case.stderr_lines} line(s):\n{err}"
    line = lines[0]
    assert line.startswith("kexec-py: "), line
    assert code == case.code, f"exit {code}, expected {case.code}: {line}"
    assert case.names.format(**paths) in line, f"the message must name {case.names.format(**paths)!r}: {line}"
    assert case.fix in line, f"the message must say {case.fix!r}: {line}"
    assert [c["call"] for c in calls] == case.calls, f"recorded {calls}"


# --- cases that need a real process ---------------------------------------------------------
# Root without some capabilities, through setpriv's bounding set: what a process
# lacking CAP_SYS_BOOT meets (an ordinary user, a container), and files that even
# root cannot read without CAP_DAC_OVERRIDE.

def run_without(caps: str, args: list[str], tmp_path: Path):
    """Run the CLI without ``caps``. The recorder stands in for the machine (sync,
    ifdown, shutdown and the kexec calls: none may reach this host), and the syscall
    guard (tests/guard.py) kills kexec-py at any kexec syscall that would get past it."""
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed"
    repo = Path(__file__).resolve().parent.parent
    record = tmp_path / "record.jsonl"
    env = dict(os.environ, PYTHONPATH=str(repo), KEXEC_PY_RECORD=str(record))
    env.pop("KEXEC_PY_RECORD_FAIL", None)
    cmd = guard.guarded(["setpriv", f"--bounding-set={caps}", "--inh-caps=-all",
                         sys.executable, "-m", "tests.recording", *args], kill=True)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != guard.GUARD_FAILED, p.stderr
    traced = ["killed by the guard at a kexec syscall"] if guard.attempted(p.returncode) else []
    assert not record.exists() or record.read_text() == "", f"calls recorded: {record.read_text()}"
    return p.returncode, p.stdout, p.stderr, traced


def test_not_root(tmp_path, debian_kernel):
    """A process without CAP_SYS_BOOT is refused before any syscall, with the exit
    code kexec-tools gets from the kernel's EPERM (255); planning alone needs no privilege."""
    root = str(SYSTEMS / X86_ROOT)
    code, out, err, traced = run_without("-sys_boot", ["--root", root, "-p", "-c", str(debian_kernel)], tmp_path)
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert code == EXIT_REFUSED, err
    assert "CAP_SYS_BOOT" in err and "run as root" in err
    assert traced == []
    code, out, err, traced = run_without("-sys_boot", ["--root", root, "-p", "-c", "--dry-run",
                                                       str(debian_kernel)], tmp_path)
    assert code == 0, err
    assert traced == []
    code, out, err, traced = run_without("-sys_boot", ["--root", root, "-p", "-u"], tmp_path)
    assert code == EXIT_REFUSED and "CAP_SYS_BOOT" in err and err.count("\n") == 1, err
    assert traced == []
    loaded = tmp_path / "root"
    shutil.copytree(root, loaded)
    (loaded / "sys/kernel/kexec_loaded").write_text("1\n")
    code, out, err, traced = run_without("-sys_boot", ["--root", str(loaded), "-e"], tmp_path)
    assert code == EXIT_REFUSED and "CAP_SYS_BOOT" in err and err.count("\n") == 1, err
    assert traced == []


@pytest.mark.parametrize("which", ["kernel", "initrd"])
def test_unreadable_file(tmp_path, debian_kernel, which):
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 4096)
    secret.chmod(0)
    files = {"kernel": str(debian_kernel), "initrd": str(debian_kernel)} | {which: str(secret)}
    code, out, err, traced = run_without("-dac_override,-dac_read_search",
                                         ["--root", str(SYSTEMS / X86_ROOT), "-p", "--dry-run", files["kernel"],
                                          "--initrd", files["initrd"]], tmp_path)
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert code == EXIT_FATAL
    assert str(secret) in err and "permission denied" in err and "fix the file mode" in err
    assert traced == []
