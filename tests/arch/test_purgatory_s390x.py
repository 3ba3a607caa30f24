"""The real s390x purgatory, linked by the Python loader and run in unicorn (s390x mode).

The old kernel (arch/s390/kernel/machine_kexec.c) calls the purgatory as a C function,
DAT off, 64-bit addressing, twice: with r2 = 0 to ask whether the capture kernel's
segments are intact (0 back in r2: yes; anything else: no, and it does not jump), then,
after the reset, with r2 != 0 to start the capture kernel. The tests check both calls:
what comes back in r2 and in the callee-saved registers r6-r15 (the s390x ELF ABI); that
the second call swaps the crash region with the memory from 0 byte for byte (the capture
kernel's segments go where they will run, every byte of the "crashed kernel's" memory
is kept in the crash region) and reaches the capture kernel's kdump entry at 0x10010
(STARTUP_KDUMP_OFFSET of the s390 boot ABI); and that with a changed byte it never does,
and changes nothing.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from unicorn import UC_ARCH_S390X, UC_MODE_BIG_ENDIAN, Uc, UcError
from unicorn.s390x_const import UC_S390X_REG_PC, UC_S390X_REG_PSWM, UC_S390X_REG_R0

from kexec_py.arch.s390x import link_purgatory
from kexec_py.plan.plan import Segment
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.plan.ranges import Range
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kexec_py" / "data" / "purgatory" / "s390x.o"

MiB = 1 << 20
RAM_SIZE = 64 * MiB
CRASH = Range.sized(32 * MiB, 16 * MiB)     # the crash region: swapped with [0, 16 MiB)
KDUMP_ENTRY = 0x10010                       # the capture kernel's kdump entry, after the swap
PURGATORY = CRASH.start + 0xD000            # below the kernel, as plan_crash puts it
RETURN = 0x9000                             # the old kernel's r14: where a check returns to
OLD_STACK = 0x8000
EMU_TIMEOUT_US = 120 * 1_000_000
# The old kernel's PSW mask for both calls: 64-bit addressing (EA and BA, bits 31-32),
# DAT off, supervisor state, interrupts off. Unicorn starts at 0: 24-bit addressing.
PSW_64BIT = 0x0000_0001_8000_0000
# What the "crashed kernel" left in memory, and what the crash region held besides the segments.
OLD_MEMORY = random.Random(1).randbytes(CRASH.size)
CRASH_JUNK = random.Random(2).randbytes(CRASH.size)


@dataclass
class Outcome:
    pc: int
    r: list[int]
    low: bytes          # [0, CRASH.size) afterwards
    crash: bytes        # the crash region afterwards
    before: bytes       # the crash region before (segments, purgatory and junk)


def segments() -> list[Segment]:
    kernel = bytes(range(256)) * 256 + b"kernel-tail"           # 64 KiB + a bit
    return [Segment("kernel", kernel, CRASH.start + 0x10000, 128 * 1024),
            Segment("initrd", b"initrd" * 3000, CRASH.start + 8 * MiB, 5 * 4096)]


def run(mode: int, *, corrupt: tuple[int, bytes] | None = None, skip_checks: bool = False) -> Outcome:
    purg, entry = link_purgatory(load_purgatory("s390x"), PURGATORY, segments(), crash=CRASH,
                                 skip_checks=skip_checks)
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, RAM_SIZE)
    uc.mem_write(0, OLD_MEMORY)
    uc.mem_write(CRASH.start, CRASH_JUNK)
    for s in [*segments(), purg]:
        uc.mem_write(s.mem, bytes(s.buf) + bytes(s.memsz - len(s.buf)))
    if corrupt:
        uc.mem_write(*corrupt)
    before = bytes(uc.mem_read(CRASH.start, CRASH.size))
    for n in range(16):
        uc.reg_write(UC_S390X_REG_R0 + n, 0x5A5A_0000_0000_0000 + n)
    uc.reg_write(UC_S390X_REG_PSWM, PSW_64BIT)
    uc.reg_write(UC_S390X_REG_R0 + 2, mode)
    uc.reg_write(UC_S390X_REG_R0 + 14, RETURN)
    uc.reg_write(UC_S390X_REG_R0 + 15, OLD_STACK)
    try:
        uc.emu_start(entry, RETURN if mode == 0 else KDUMP_ENTRY, timeout=EMU_TIMEOUT_US, count=300_000_000)
    except UcError:
        pass                    # the halt (a disabled-wait lpswe) is where unicorn stops
    return Outcome(uc.reg_read(UC_S390X_REG_PC), [uc.reg_read(UC_S390X_REG_R0 + n) for n in range(16)],
                   bytes(uc.mem_read(0, CRASH.size)), bytes(uc.mem_read(CRASH.start, CRASH.size)), before)


def _diff_ranges(a: bytes, b: bytes) -> list[tuple[int, int]]:
    """Where two equal-length byte strings differ, as [start, end) runs (page granular)."""
    out: list[tuple[int, int]] = []
    for page in range(0, len(a), 4096):
        if a[page:page + 4096] != b[page:page + 4096]:
            lo = next(i for i in range(page, page + 4096) if a[i] != b[i])
            hi = next(i for i in range(page + 4095, page - 1, -1) if a[i] != b[i]) + 1
            if out and out[-1][1] >= page:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
    return out


def test_check_call_returns_0_with_the_callers_registers():
    out = run(0)
    assert out.pc == RETURN
    assert out.r[2] == 0
    assert out.r[6:14] == [0x5A5A_0000_0000_0000 + n for n in range(6, 14)]
    assert (out.r[14], out.r[15]) == (RETURN, OLD_STACK)
    assert out.low == OLD_MEMORY                        # a check changes nothing outside the purgatory


def test_check_call_reports_a_changed_byte():
    for where in (CRASH.start + 0x10000 + 5, CRASH.start + 0x10000 + 128 * 1024 - 1,
                  CRASH.start + 8 * MiB + 5 * 4096 - 8):
        out = run(0, corrupt=(where, b"\x99"))
        assert out.pc == RETURN and out.r[2] != 0, hex(where)
        assert out.r[6:16] == [*(0x5A5A_0000_0000_0000 + n for n in range(6, 14)), RETURN, OLD_STACK]


def test_crash_call_swaps_the_region_and_enters_the_kdump_entry():
    out = run(1)
    assert out.pc == KDUMP_ENTRY
    # every byte of the old memory from 0 is now in the crash region
    assert out.crash == OLD_MEMORY, _diff_ranges(out.crash, OLD_MEMORY)
    # the memory from 0 holds what the crash region held (the segments where they run),
    # except a few bytes just below the purgatory's place, where its last instructions ran,
    # and the purgatory's place itself, which keeps the old bytes (copied, not swapped)
    self_at = PURGATORY - CRASH.start
    self_end = self_at + -(-load_purgatory("s390x").memsz // 4096) * 4096
    assert out.low[self_at:self_end] == OLD_MEMORY[self_at:self_end]
    changed = _diff_ranges(out.low[:self_at], out.before[:self_at]) + \
        _diff_ranges(out.low[self_end:], out.before[self_end:])
    assert len(changed) == 1 and self_at - 64 <= changed[0][0] and changed[0][1] <= self_at, changed
    for seg in segments():
        at = seg.mem - CRASH.start
        assert out.low[at:at + seg.memsz] == bytes(seg.buf) + bytes(seg.memsz - len(seg.buf))


def test_crash_call_with_a_changed_byte_never_reaches_the_kernel():
    out = run(1, corrupt=(CRASH.start + 0x10000 + 100, b"\x01"))
    assert out.pc not in (KDUMP_ENTRY, RETURN)
    assert out.low == OLD_MEMORY                        # nothing swapped


def test_skip_checks_passes_a_changed_byte():
    assert run(0, corrupt=(CRASH.start + 0x10000, b"\x99"), skip_checks=True).r[2] == 0
    assert run(1, corrupt=(CRASH.start + 0x10000, b"\x99"), skip_checks=True).pc == KDUMP_ENTRY


def test_build_script_rebuilds_the_shipped_object(tmp_path):
    require_tool("s390x-linux-gnu-gcc", "gcc-s390x-linux-gnu")
    out = tmp_path / "s390x.o"
    subprocess.run([str(REPO / "scripts" / "build-purgatory"), "s390x", "-o", str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == SHIPPED.read_bytes()
