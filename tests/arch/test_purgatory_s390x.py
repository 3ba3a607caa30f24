"""The real s390x purgatory, linked by the Python loader and run in unicorn (s390x mode).

The old kernel (arch/s390/kernel/machine_kexec.c) calls the purgatory as a C function,
DAT off, 64-bit addressing, twice: with r2 = 0 to ask whether the capture kernel's
segments are intact (0 back in r2: yes; anything else: no, and it does not jump), then,
after the reset, with r2 != 0 to start the capture kernel. The tests check both calls:
what comes back in r2 and in the callee-saved registers r6-r15 (the s390x ELF ABI), and
that the second call reaches the capture kernel's kdump entry (STARTUP_KDUMP_OFFSET,
0x10010 in the s390 boot ABI's entry table) where it lies in the crash region, or, with
a changed byte, never does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, Uc, UcError
from unicorn.s390x_const import UC_S390X_REG_PC, UC_S390X_REG_PSWM, UC_S390X_REG_R0

from kexec_py.arch.s390x import link_purgatory
from kexec_py.plan.plan import Segment
from kexec_py.plan.purgatory import load_purgatory
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kexec_py" / "data" / "purgatory" / "s390x.o"

MiB = 1 << 20
RAM_SIZE = 64 * MiB
CRASH = 32 * MiB                        # the crash region's start
KDUMP_ENTRY = CRASH + 0x10010           # the capture kernel's kdump entry, before the swap
PURGATORY = CRASH + 0xD000              # below the kernel, as plan_crash puts it
RETURN = 0x9000                         # the old kernel's r14: where a check returns to
OLD_STACK = 0x8000
EMU_TIMEOUT_US = 60 * 1_000_000
# The old kernel's PSW mask for both calls: 64-bit addressing (EA and BA, bits 31-32),
# DAT off, supervisor state, interrupts off. Unicorn starts at 0: 24-bit addressing.
PSW_64BIT = 0x0000_0001_8000_0000


@dataclass
class Outcome:
    pc: int
    r: list[int]


def segments() -> list[Segment]:
    kernel = bytes(range(256)) * 256 + b"kernel-tail"           # 64 KiB + a bit
    return [Segment("kernel", kernel, CRASH + 0x10000, 128 * 1024),
            Segment("initrd", b"initrd" * 3000, CRASH + 8 * MiB, 5 * 4096)]


def run(mode: int, *, corrupt: tuple[int, bytes] | None = None, skip_checks: bool = False) -> Outcome:
    purg, entry = link_purgatory(load_purgatory("s390x"), PURGATORY, segments(), kernel_entry=KDUMP_ENTRY,
                                 skip_checks=skip_checks)
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, RAM_SIZE)
    for s in [*segments(), purg]:
        uc.mem_write(s.mem, bytes(s.buf))
    if corrupt:
        uc.mem_write(*corrupt)
    for n in range(16):
        uc.reg_write(UC_S390X_REG_R0 + n, 0x5A5A_0000_0000_0000 + n)
    uc.reg_write(UC_S390X_REG_PSWM, PSW_64BIT)
    uc.reg_write(UC_S390X_REG_R0 + 2, mode)
    uc.reg_write(UC_S390X_REG_R0 + 14, RETURN)
    uc.reg_write(UC_S390X_REG_R0 + 15, OLD_STACK)
    stops = {RETURN, KDUMP_ENTRY}
    pc = entry
    try:
        uc.emu_start(entry, RETURN if mode == 0 else KDUMP_ENTRY, timeout=EMU_TIMEOUT_US, count=200_000_000)
    except UcError:
        pass                    # the halt (a disabled-wait lpswe) is where unicorn stops
    pc = uc.reg_read(UC_S390X_REG_PC)
    assert pc in stops or pc != entry, "the purgatory did not run"
    return Outcome(pc, [uc.reg_read(UC_S390X_REG_R0 + n) for n in range(16)])


def test_check_call_returns_0_with_the_callers_registers():
    out = run(0)
    assert out.pc == RETURN
    assert out.r[2] == 0
    assert out.r[6:14] == [0x5A5A_0000_0000_0000 + n for n in range(6, 14)]
    assert (out.r[14], out.r[15]) == (RETURN, OLD_STACK)


def test_check_call_reports_a_changed_byte():
    for where in (CRASH + 0x10000 + 5, CRASH + 0x10000 + 128 * 1024 - 1, CRASH + 8 * MiB + 5 * 4096 - 8):
        out = run(0, corrupt=(where, b"\x99"))
        assert out.pc == RETURN and out.r[2] != 0, hex(where)
        assert out.r[6:16] == [*(0x5A5A_0000_0000_0000 + n for n in range(6, 14)), RETURN, OLD_STACK]


def test_crash_call_enters_the_kdump_entry_in_the_crash_region():
    out = run(1)
    assert out.pc == KDUMP_ENTRY


def test_crash_call_with_a_changed_byte_never_reaches_the_kernel():
    out = run(1, corrupt=(CRASH + 0x10000 + 100, b"\x01"))
    assert out.pc not in (KDUMP_ENTRY, RETURN)


def test_skip_checks_passes_a_changed_byte():
    assert run(0, corrupt=(CRASH + 0x10000, b"\x99"), skip_checks=True).r[2] == 0
    assert run(1, corrupt=(CRASH + 0x10000, b"\x99"), skip_checks=True).pc == KDUMP_ENTRY


def test_build_script_rebuilds_the_shipped_object(tmp_path):
    require_tool("s390x-linux-gnu-gcc", "gcc-s390x-linux-gnu")
    out = tmp_path / "s390x.o"
    subprocess.run([str(REPO / "scripts" / "build-purgatory"), "s390x", "-o", str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == SHIPPED.read_bytes()
