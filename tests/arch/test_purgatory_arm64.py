"""The real arm64 purgatory, linked by the Python loader and run in unicorn.

The CPU starts at purgatory_start as the old kernel's cpu_soft_restart leaves
it: MMU off, a stack pointer pointing nowhere, garbage in every register. The
tests check what the kernel would see at its first instruction (booting.rst:
x0 = the device tree, x1 = x2 = x3 = 0), or that it is never reached.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from unicorn import UC_ARCH_ARM64, UC_HOOK_MEM_WRITE, UC_MODE_ARM, Uc
from unicorn.arm64_const import UC_ARM64_REG_PC, UC_ARM64_REG_SP, UC_ARM64_REG_X0

from kexec_py.arch.arm64 import link_purgatory
from kexec_py.plan.plan import Segment
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.plan.ranges import Range
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kexec_py" / "data" / "purgatory" / "arm64.o"

MiB = 1 << 20
RAM = 0x4000_0000
RAM_SIZE = 64 * MiB
KERNEL = RAM + 2 * MiB
DTB = RAM + 40 * MiB
INITRD = RAM + 44 * MiB
PURGATORY = RAM + 48 * MiB
UART = 0x0900_0000
EMU_TIMEOUT_US = 60 * 1_000_000


@dataclass
class Outcome:
    reached_kernel: bool
    pc: int
    x: list[int]
    console: bytes


def segments() -> list[Segment]:
    kernel = bytes(range(256)) * 1024 + b"kernel-tail"          # 256 KiB + a bit
    return [Segment("kernel", kernel, KERNEL, 1 * MiB),
            Segment("dtb", b"\xd0\x0d\xfe\xed" + bytes(200), DTB, 4096),
            Segment("initrd", b"initrd" * 3000, INITRD, 5 * 4096)]


def run(segs: list[Segment], *, corrupt: tuple[int, bytes] | None = None, skip_checks: bool = False,
        console: bool = True) -> Outcome:
    purgatory = load_purgatory("arm64")
    where = Range.sized(PURGATORY, purgatory.memsz)
    purg, entry = link_purgatory(purgatory, where, segs, kernel_entry=KERNEL, dtb=DTB,
                                 skip_checks=skip_checks)
    if console:           # the loader leaves it 0; here it lets us watch the messages
        buf = bytearray(purg.buf)
        linked = purgatory.link(PURGATORY)
        off = linked.symbol_addr("console_mmio") - PURGATORY
        buf[off:off + 8] = UART.to_bytes(8, "little")
        purg = Segment("purgatory", bytes(buf), purg.mem, purg.memsz)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM, RAM_SIZE)
    uc.mem_map(UART, 0x1000)
    for s in [*segs, purg]:
        uc.mem_write(s.mem, bytes(s.buf))
    if corrupt:
        uc.mem_write(*corrupt)
    for n in range(31):
        uc.reg_write(UC_ARM64_REG_X0 + n, 0x5A5A_0000_0000_0000 + n)
    uc.reg_write(UC_ARM64_REG_SP, 0xDEAD_0000)
    written = bytearray()
    uc.hook_add(UC_HOOK_MEM_WRITE, lambda uc, access, addr, size, value, data:
                written.append(value & 0xFF), begin=UART, end=UART)
    uc.emu_start(entry, KERNEL, timeout=EMU_TIMEOUT_US, count=200_000_000)
    pc = uc.reg_read(UC_ARM64_REG_PC)
    return Outcome(pc == KERNEL, pc, [uc.reg_read(UC_ARM64_REG_X0 + n) for n in range(4)], bytes(written))


def test_good_digest_enters_the_kernel_with_x0_the_dtb():
    out = run(segments())
    assert out.reached_kernel, out.console.decode(errors="replace")
    assert out.x == [DTB, 0, 0, 0]
    assert b"sha256 ok" in out.console and b"jumping to kernel" in out.console


@pytest.mark.parametrize("where", [KERNEL + 5, KERNEL + 1 * MiB - 1, DTB + 300, INITRD + 5 * 4096 - 8])
def test_a_changed_byte_never_reaches_the_kernel(where):
    out = run(segments(), corrupt=(where, b"\x99"))
    assert not out.reached_kernel
    assert b"sha256 mismatch" in out.console
    assert b"jumping" not in out.console


def test_skip_checks_jumps_even_with_a_bad_digest():
    out = run(segments(), corrupt=(KERNEL, b"\x99"), skip_checks=True, console=False)
    assert out.reached_kernel and out.x == [DTB, 0, 0, 0]
    assert out.console == b""


def test_digest_printed_on_mismatch_is_the_real_one():
    segs = segments()
    out = run(segs, corrupt=(KERNEL, b"\x77"))
    text = out.console.decode()
    computed = text.split("computed ")[1].split()[0]
    bad = bytearray(bytes(segs[0].buf))
    bad[0] = 0x77
    h = hashlib.sha256()
    for s, data in zip(segs, [bytes(bad), bytes(segs[1].buf), bytes(segs[2].buf)]):
        h.update(data + bytes(s.memsz - len(data)))
    assert computed == h.hexdigest()


def test_build_script_rebuilds_the_shipped_object(tmp_path):
    require_tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    out = tmp_path / "arm64.o"
    subprocess.run([str(REPO / "scripts" / "build-purgatory"), "arm64", "-o", str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == SHIPPED.read_bytes()
