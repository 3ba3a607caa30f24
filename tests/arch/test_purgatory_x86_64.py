"""The real x86_64 purgatory, run in an emulator.

The shipped object (kexec_py/data/purgatory/x86_64.o) is linked by the Python
loader and run in unicorn in the state the old kernel leaves the CPU in: 64-bit
mode on identity-mapped 4-level page tables, CR4 = PAE only (so SSE faults),
interrupts off, no usable GDT and no usable stack. The test then checks what the new kernel would see when
control reaches its 64-bit entry point, or that control never gets there.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn.x86_const import (
    UC_X86_INS_IN, UC_X86_INS_OUT, UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CR4, UC_X86_REG_CS,
    UC_X86_REG_DS, UC_X86_REG_EFLAGS, UC_X86_REG_ES, UC_X86_REG_FS, UC_X86_REG_GDTR, UC_X86_REG_GS,
    UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11, UC_X86_REG_R12, UC_X86_REG_R13,
    UC_X86_REG_R14, UC_X86_REG_R15, UC_X86_REG_RAX, UC_X86_REG_RBP, UC_X86_REG_RBX, UC_X86_REG_RCX,
    UC_X86_REG_RDI, UC_X86_REG_RDX, UC_X86_REG_RIP, UC_X86_REG_RSI, UC_X86_REG_RSP, UC_X86_REG_SS,
)

from kexec_py.plan.purgatory import LinkedPurgatory, load_purgatory, pack_sha256_regions, sha256_of_segments

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kexec_py" / "data" / "purgatory" / "x86_64.o"

MiB = 1 << 20
LOW_MEM_SIZE = 640 << 10                 # the x86 kdump backup region [0, 640 KiB)
CRASH_BASE = 0x2000_0000                 # a pretend "Crash kernel" reservation
CRASH_SIZE = 32 * MiB
PURGATORY = CRASH_BASE + 0x1000
BACKUP_DST = CRASH_BASE + 1 * MiB
BOOT_PARAMS = CRASH_BASE + 2 * MiB
KERNEL = CRASH_BASE + 16 * MiB
KERNEL_FILE = 1 * MiB + 123              # bytes of the fake kernel ...
KERNEL_MEM = 1 * MiB + 512 * 1024        # ... and its memsz (the rest is zero, like .bss)
KERNEL_ENTRY = KERNEL + 0x200            # the 64-bit boot protocol entry
PAGE_TABLES = 0x3000_0000
EMU_TIMEOUT_US = 120 * 1_000_000

# entry64_regs order
REG_ORDER = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
UC_REG = {
    "rax": UC_X86_REG_RAX, "rbx": UC_X86_REG_RBX, "rcx": UC_X86_REG_RCX, "rdx": UC_X86_REG_RDX,
    "rsi": UC_X86_REG_RSI, "rdi": UC_X86_REG_RDI, "rsp": UC_X86_REG_RSP, "rbp": UC_X86_REG_RBP,
    "r8": UC_X86_REG_R8, "r9": UC_X86_REG_R9, "r10": UC_X86_REG_R10, "r11": UC_X86_REG_R11,
    "r12": UC_X86_REG_R12, "r13": UC_X86_REG_R13, "r14": UC_X86_REG_R14, "r15": UC_X86_REG_R15,
    "rip": UC_X86_REG_RIP,
}


@dataclass(frozen=True)
class Seg:
    name: str
    mem: int
    memsz: int
    buf: bytes


def boot_regs(**overrides: int) -> dict[str, int]:
    """Distinctive values in every register, plus what the boot protocol needs."""
    regs = {name: 0x0101_0101_0101_0101 * (n + 1) + 0x10 * n for n, name in enumerate(REG_ORDER)}
    regs.update(rsi=BOOT_PARAMS, rsp=BOOT_PARAMS - 0x80, rip=KERNEL_ENTRY)
    regs.update(overrides)
    return regs


def pack_regs(regs: dict[str, int]) -> bytes:
    return struct.pack("<17Q", *(regs[name] for name in REG_ORDER))


# --- a 16550 UART, from its datasheet ----------------------------------------------------
# Register offsets from the base port; at offsets 0 and 1 the register depends on LCR's
# divisor latch access bit (DLAB).
UART_REGS = {0: ("THR", "DLL"), 1: ("IER", "DLM"), 2: ("FCR", "FCR"), 3: ("LCR", "LCR"),
             4: ("MCR", "MCR"), 5: ("LSR", "LSR"), 6: ("MSR", "MSR"), 7: ("SCR", "SCR")}
LCR_DLAB = 0x80
LCR_8N1 = 0b0000_0011        # word length 8 (bits 1:0 = 11), 1 stop bit (bit 2 = 0), no parity (bit 3 = 0)
LSR_THRE, LSR_TEMT = 0x20, 0x40
UART_CLOCK_HZ = 1_843_200    # the PC's UART crystal; the 16550 samples each bit 16 times


def uart_divisor(baud: int) -> int:
    """The divisor latch value for ``baud``: clock / (16 x divisor) = baud."""
    divisor, rest = divmod(UART_CLOCK_HZ, 16 * baud)
    assert rest == 0 and 1 <= divisor <= 0xFFFF, f"no exact 16-bit divisor for {baud} baud"
    return divisor


class Uart16550:
    """The UART at ``base`` as the purgatory's port writes program it.

    ``writes`` lists every write as (register, value), the register named by offset and
    DLAB as the chip would decode it; ``text`` holds what went to THR, and ``line`` the
    (LCR, divisor latch) each of those characters was sent with. The transmitter is
    always idle (LSR: THRE and TEMT)."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.writes: list[tuple[str, int]] = []
        self.text = bytearray()
        self.line: set[tuple[int, int | None]] = set()
        self.lcr = LCR_8N1                       # as some earlier owner left it
        self.dll: int | None = None              # unknown until written
        self.dlm: int | None = None

    def owns(self, port: int) -> bool:
        return self.base <= port < self.base + 8

    @property
    def divisor(self) -> int | None:
        return None if self.dll is None or self.dlm is None else self.dlm << 8 | self.dll

    def read(self, port: int) -> int:
        return LSR_THRE | LSR_TEMT if UART_REGS[port - self.base][0] == "LSR" else 0xFF

    def write(self, port: int, value: int) -> None:
        reg = UART_REGS[port - self.base][1 if self.lcr & LCR_DLAB else 0]
        self.writes.append((reg, value))
        if reg == "LCR":
            self.lcr = value
        elif reg == "DLL":
            self.dll = value
        elif reg == "DLM":
            self.dlm = value
        elif reg == "THR":
            self.text.append(value)
            self.line.add((self.lcr, self.divisor))


@dataclass
class Outcome:
    reached_kernel: bool
    rip: int
    regs: dict[str, int]
    segs: dict[str, int]
    eflags: int
    serial: bytes
    port_io: list[tuple[str, int]]
    uart: Uart16550
    machine: "Machine"
    seconds: float


class Machine:
    """An x86_64 CPU as the old kernel's relocate_kernel hands it to the purgatory."""

    def __init__(self, serial_base: int = 0x3f8) -> None:
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc = uc
        uc.mem_map(0, LOW_MEM_SIZE)
        uc.mem_map(CRASH_BASE, CRASH_SIZE)
        uc.mem_map(PAGE_TABLES, 0x3000)
        # Identity map the first GiB with 2 MiB pages: PML4 -> PDPT -> PD.
        pml4, pdpt, pd = PAGE_TABLES, PAGE_TABLES + 0x1000, PAGE_TABLES + 0x2000
        uc.mem_write(pml4, struct.pack("<Q", pdpt | 0x3))             # present, writable
        uc.mem_write(pdpt, struct.pack("<Q", pd | 0x3))
        uc.mem_write(pd, b"".join(struct.pack("<Q", (i << 21) | 0x83) for i in range(512)))  # + PS
        uc.reg_write(UC_X86_REG_CR3, pml4)
        # Control registers as the kernel's relocate_kernel leaves them: CR4 = PAE only
        # (so OSFXSR is clear and any SSE instruction would fault), CR0 = PG|AM|WP|NE|ET|PE.
        uc.reg_write(UC_X86_REG_CR4, 0x20)
        uc.reg_write(UC_X86_REG_CR0, 0x8005_0031)
        # Nothing the purgatory may rely on: a GDT pointer to nowhere, a stack pointer
        # into unmapped memory (any push before it sets its own stack faults),
        # interrupts off.
        uc.reg_write(UC_X86_REG_GDTR, (0, 0x7654_3000, 0x17, 0))
        uc.reg_write(UC_X86_REG_RSP, 0x7fff_f000)
        uc.reg_write(UC_X86_REG_EFLAGS, 0x2)
        self.port_io: list[tuple[str, int]] = []
        self.uart = Uart16550(serial_base)
        uc.hook_add(UC_HOOK_INSN, self._port_in, None, 1, 0, UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._port_out, None, 1, 0, UC_X86_INS_OUT)

    def _port_in(self, uc, port, size, user_data):
        self.port_io.append(("in", port))
        return self.uart.read(port) if self.uart.owns(port) else 0xFF

    def _port_out(self, uc, port, size, value, user_data):
        self.port_io.append(("out", port))
        if self.uart.owns(port):
            self.uart.write(port, value & 0xFF)

    def load(self, seg: Seg | LinkedPurgatory) -> None:
        if isinstance(seg, LinkedPurgatory):
            self.uc.mem_write(seg.base, bytes(seg.buf))
        else:
            self.uc.mem_write(seg.mem, seg.buf)     # the tail up to memsz is already zero

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(addr, size))

    def run(self, entry: int) -> Outcome:
        start = time.perf_counter()
        self.uc.emu_start(entry, KERNEL_ENTRY, timeout=EMU_TIMEOUT_US)
        seconds = time.perf_counter() - start
        uc = self.uc
        rip = uc.reg_read(UC_X86_REG_RIP)
        return Outcome(
            reached_kernel=rip == KERNEL_ENTRY, rip=rip,
            regs={name: uc.reg_read(r) for name, r in UC_REG.items()},
            segs={name: uc.reg_read(r) for name, r in (("cs", UC_X86_REG_CS), ("ds", UC_X86_REG_DS),
                                                         ("es", UC_X86_REG_ES), ("ss", UC_X86_REG_SS),
                                                         ("fs", UC_X86_REG_FS), ("gs", UC_X86_REG_GS))},
            eflags=uc.reg_read(UC_X86_REG_EFLAGS), serial=bytes(self.uart.text), port_io=list(self.port_io),
            uart=self.uart, machine=self, seconds=seconds)


LOW_MEM_PATTERN = bytes((i * 7 + (i >> 8) * 13) & 0xFF for i in range(LOW_MEM_SIZE))


@pytest.fixture(scope="module")
def purgatory_object():
    return load_purgatory("x86_64")


def kexec_world(*, seed: int = 1):
    """The segments a crash load would have: backup area, boot_params, kernel."""
    rnd = random.Random(seed)
    boot_params = bytes(rnd.getrandbits(8) for _ in range(4096))
    kernel = rnd.randbytes(KERNEL_FILE)
    return [
        Seg("backup", BACKUP_DST, LOW_MEM_SIZE, b""),
        Seg("boot_params", BOOT_PARAMS, 4096, boot_params),
        Seg("kernel", KERNEL, KERNEL_MEM, kernel),
    ]


def run_purgatory(obj, *, segments=None, corrupt=None, regs=None, skip_checks=0, console_serial=0,
                  serial_base=None, serial_baud=None, backup=True, regions=None, digest=None,
                  setup=None) -> Outcome:
    segments = kexec_world() if segments is None else segments
    purgatory = obj.link(PURGATORY)
    computed_regions, computed_digest = sha256_of_segments(segments)
    if regions is None:
        regions = computed_regions
    purgatory.set_symbol("sha256_regions", pack_sha256_regions(regions))
    purgatory.set_symbol("sha256_digest", computed_digest if digest is None else digest)
    purgatory.set_symbol("skip_checks", bytes([skip_checks]))
    purgatory.set_symbol("console_serial", bytes([console_serial]))
    if serial_base is not None:
        purgatory.set_symbol("serial_base", struct.pack("<H", serial_base))
    if serial_baud is not None:
        purgatory.set_symbol("serial_baud", struct.pack("<I", serial_baud))
    if backup:
        purgatory.set_symbol("backup_src", struct.pack("<Q", 0))
        purgatory.set_symbol("backup_dst", struct.pack("<Q", BACKUP_DST))
        purgatory.set_symbol("backup_size", struct.pack("<Q", LOW_MEM_SIZE))
    purgatory.set_symbol("entry64_regs", pack_regs(boot_regs() if regs is None else regs))

    machine = Machine(0x3f8 if serial_base is None else serial_base)
    machine.uc.mem_write(0, LOW_MEM_PATTERN)
    for seg in segments:
        machine.load(seg)
    machine.load(purgatory)
    if corrupt is not None:
        corrupt(machine)
    if setup is not None:
        setup(machine, purgatory)
    return machine.run(purgatory.entry)


def assert_halted(out: Outcome, obj) -> None:
    purgatory = obj.link(PURGATORY)
    halt = purgatory.symbol_addr("purgatory_halt")
    assert not out.reached_kernel
    # unicorn stops after executing hlt; the loop is cli; hlt; jmp back to hlt.
    assert halt < out.rip <= halt + 4, f"stopped at {out.rip:#x}, not in the halt loop at {halt:#x}"
    assert out.machine.read(out.rip - 1, 1) == b"\xf4"
    assert out.eflags & 0x200 == 0, "interrupts must stay off"


# --- the three behaviours asked of the purgatory ---------------------------------------


def test_good_digest_enters_kernel_with_boot_protocol_state(purgatory_object):
    regs = boot_regs()
    out = run_purgatory(purgatory_object, regs=regs)
    assert out.reached_kernel, f"stopped at {out.rip:#x}"
    assert out.regs == regs
    assert out.segs["cs"] == 0x10
    assert out.segs["ds"] == out.segs["es"] == out.segs["ss"] == 0x18
    assert out.eflags & 0x200 == 0, "interrupts must be off at kernel entry"
    assert out.eflags & 0x400 == 0, "direction flag must be clear"
    assert out.machine.read(BACKUP_DST, LOW_MEM_SIZE) == LOW_MEM_PATTERN
    assert out.port_io == [], "console_serial=0 must not touch any I/O port"


def test_kernel_sees_a_working_gdt(purgatory_object):
    # The GDT the kernel inherits must describe 0x10 and 0x18 as flat 64-bit code / data.
    out = run_purgatory(purgatory_object)
    assert out.reached_kernel
    _, gdt_base, gdt_limit, _ = out.machine.uc.reg_read(UC_X86_REG_GDTR)
    assert gdt_limit >= 0x1F
    purgatory = purgatory_object.link(PURGATORY)
    assert PURGATORY <= gdt_base < PURGATORY + purgatory.memsz
    code, data = struct.unpack("<2Q", out.machine.read(gdt_base + 0x10, 16))
    # base 0, limit 0xfffff pages
    for desc in (code, data):
        assert desc & 0xFFFF == 0xFFFF and (desc >> 48) & 0xF == 0xF
        assert (desc >> 16) & 0xFFFFFF == 0 and desc >> 56 == 0
        assert desc & (1 << 47), "present"
        assert desc & (1 << 55), "4 KiB granularity"
    assert (code >> 40) & 0x1A == 0x1A, "code, execute/read"
    assert code & (1 << 53) and not code & (1 << 54), "L=1, D=0: 64-bit code"
    assert (data >> 40) & 0x1A == 0x12, "data, read/write"


@pytest.mark.parametrize("where", ["kernel-file-bytes", "kernel-zero-tail", "boot-params", "backup-area"])
def test_one_flipped_byte_halts_before_kernel_and_backup(purgatory_object, where):
    addr = {
        "kernel-file-bytes": KERNEL + 0x1234,
        "kernel-zero-tail": KERNEL + KERNEL_FILE + 77,
        "boot-params": BOOT_PARAMS + 0x1F1,
        "backup-area": BACKUP_DST + LOW_MEM_SIZE - 1,
    }[where]

    def flip(machine: Machine) -> None:
        byte = machine.read(addr, 1)[0]
        machine.uc.mem_write(addr, bytes([byte ^ 0x01]))

    out = run_purgatory(purgatory_object, corrupt=flip)
    assert_halted(out, purgatory_object)
    backup = out.machine.read(BACKUP_DST, LOW_MEM_SIZE)
    if where == "backup-area":
        assert backup == bytes(LOW_MEM_SIZE - 1) + b"\x01"
    else:
        assert backup == bytes(LOW_MEM_SIZE), "the backup must not run before the check passes"


def test_wrong_digest_halts(purgatory_object):
    out = run_purgatory(purgatory_object, digest=bytes(32))
    assert_halted(out, purgatory_object)


def test_skip_checks_enters_kernel_despite_bad_digest(purgatory_object):
    regs = boot_regs()
    out = run_purgatory(purgatory_object, digest=b"\xaa" * 32, skip_checks=1, regs=regs)
    assert out.reached_kernel
    assert out.regs == regs
    assert out.machine.read(BACKUP_DST, LOW_MEM_SIZE) == LOW_MEM_PATTERN


def test_no_backup_when_backup_dst_is_zero(purgatory_object):
    out = run_purgatory(purgatory_object, backup=False)
    assert out.reached_kernel
    assert out.machine.read(BACKUP_DST, LOW_MEM_SIZE) == bytes(LOW_MEM_SIZE)


def test_rsp_zero_keeps_the_purgatory_stack(purgatory_object):
    regs = boot_regs(rsp=0)
    out = run_purgatory(purgatory_object, regs=regs)
    assert out.reached_kernel
    stack_end = purgatory_object.link(PURGATORY).symbol_addr("stack_end")
    assert stack_end - 4096 <= out.regs["rsp"] <= stack_end
    assert {k: v for k, v in out.regs.items() if k != "rsp"} == {k: v for k, v in regs.items() if k != "rsp"}


def test_zero_rip_halts_instead_of_jumping_to_zero(purgatory_object):
    out = run_purgatory(purgatory_object, regs=boot_regs(rip=0))
    assert_halted(out, purgatory_object)


# --- the SHA-256 implementation against hashlib ------------------------------------------

SHA_CASES = {
    "empty-message": [],
    "one-block-edges": [(0, 55), (100, 1)],              # 56 bytes: padding needs a second block
    "exactly-64": [(5, 64)],
    "odd-splits": [(1, 3), (4000, 61), (9000, 64), (20000, 65), (30001, 1), (40000, 127)],
    "zero-length-gaps": [(0, 0), (10, 10), (0, 0), (50, 118)],
    "sixteen-regions": [(i * 1000 + i, 37 * i + 5) for i in range(16)],
    "large": [(0, 512 * 1024 + 3)],
}


@pytest.mark.parametrize("case", SHA_CASES, ids=list(SHA_CASES))
def test_sha256_matches_hashlib(purgatory_object, case):
    rnd = random.Random(case)
    blob = rnd.randbytes(KERNEL_MEM)
    segments = [Seg("kernel", KERNEL, KERNEL_MEM, blob)]
    regions = [(KERNEL + start, length) for start, length in SHA_CASES[case]]
    digest = hashlib.sha256(b"".join(blob[s - KERNEL:s - KERNEL + n] for s, n in regions)).digest()
    good = run_purgatory(purgatory_object, segments=segments, regions=regions, digest=digest, backup=False)
    assert good.reached_kernel
    bad = run_purgatory(purgatory_object, segments=segments, regions=regions, backup=False,
                        digest=digest[:-1] + bytes([digest[-1] ^ 0x80]))
    assert_halted(bad, purgatory_object)


# --- serial console -------------------------------------------------------------------


PROGRESS = ("kexec-py purgatory: started\r\n"
            "kexec-py purgatory: sha256 ok\r\n"
            "kexec-py purgatory: low memory backed up\r\n"
            "kexec-py purgatory: jumping to kernel\r\n")


def test_serial_console_reports_progress(purgatory_object):
    out = run_purgatory(purgatory_object, console_serial=1)
    assert out.reached_kernel
    assert out.serial.decode() == PROGRESS
    assert {port for _, port in out.port_io} == {0x3f8, 0x3fd}


def test_serial_console_reports_mismatch_at_other_port(purgatory_object):
    out = run_purgatory(purgatory_object, console_serial=1, serial_base=0x2f8, digest=bytes(32))
    assert_halted(out, purgatory_object)
    text = out.serial.decode()
    assert "kexec-py purgatory: sha256 mismatch, halting" in text
    assert "expected " + "00" * 32 in text
    _, digest = sha256_of_segments(kexec_world())
    assert "computed " + digest.hex() in text
    assert "jumping" not in text
    assert {port for _, port in out.port_io} == {0x2f8, 0x2fd}


# 9600 to 115200 are the rates kexec-tools' --serial-baud takes; 300 (divisor 0x180) also
# checks the divisor's high byte, which is 0 for all of those.
@pytest.mark.parametrize("baud", [9600, 57600, 115200, 300])
def test_serial_baud_programs_the_uart_before_the_first_character(purgatory_object, baud):
    out = run_purgatory(purgatory_object, console_serial=1, serial_base=0x2f8, serial_baud=baud)
    assert out.reached_kernel
    uart, divisor = out.uart, uart_divisor(baud)
    first_char = [reg for reg, _ in uart.writes].index("THR")
    setup, after = uart.writes[:first_char], uart.writes[first_char:]
    assert [w for w in setup if w[0] in ("LCR", "DLL", "DLM")] == [
        ("LCR", LCR_DLAB), ("DLL", divisor & 0xFF), ("DLM", divisor >> 8), ("LCR", LCR_8N1)]
    # Besides the line settings, the setup may only turn the UART's interrupts off and its FIFOs on.
    assert {reg for reg, _ in setup} <= {"LCR", "DLL", "DLM", "IER", "FCR"}
    assert all(value == 0 for reg, value in setup if reg == "IER")
    assert all(value & 0x01 for reg, value in setup if reg == "FCR")
    assert {reg for reg, _ in after} == {"THR"}, "the UART is set up once, before the first character"
    assert uart.line == {(LCR_8N1, divisor)}, "every character goes out at the new rate, 8N1"
    assert uart.text.decode() == PROGRESS
    assert {port for _, port in out.port_io} <= set(range(0x2f8, 0x2fe))


# 0: keep the running kernel's settings; 230400 and 1 have no 16-bit divisor of 115200.
@pytest.mark.parametrize("baud", [0, 230400, 1])
def test_serial_baud_without_a_divisor_leaves_the_uart_alone(purgatory_object, baud):
    out = run_purgatory(purgatory_object, console_serial=1, serial_base=0x2f8, serial_baud=baud)
    assert out.reached_kernel
    assert {reg for reg, _ in out.uart.writes} == {"THR"}, "no LCR, DLL or DLM write (nor any other)"
    assert out.uart.text.decode() == PROGRESS
    assert {port for _, port in out.port_io} == {0x2f8, 0x2fd}


def test_serial_baud_without_console_serial_touches_no_port(purgatory_object):
    out = run_purgatory(purgatory_object, console_serial=0, serial_base=0x2f8, serial_baud=9600)
    assert out.reached_kernel
    assert out.port_io == []


# --- the object itself ----------------------------------------------------------------

ABI_SYMBOLS = {
    "sha256_regions": 256, "sha256_digest": 32, "skip_checks": 1, "backup_src": 8, "backup_dst": 8,
    "backup_size": 8, "console_serial": 1, "serial_base": 2, "serial_baud": 4, "entry64_regs": 136,
}


def test_object_symbols_are_the_loader_abi():
    from elftools.elf.elffile import ELFFile

    with SHIPPED.open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_REL" and elf["e_machine"] == "EM_X86_64"
        symbols = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()
                   if s["st_info"]["bind"] == "STB_GLOBAL"}
        for name, size in ABI_SYMBOLS.items():
            sym = symbols[name]
            section = elf.get_section(sym["st_shndx"])
            assert (name, sym["st_size"]) == (name, size)
            assert (name, section.name, section["sh_type"]) == (name, ".data", "SHT_PROGBITS")
        assert symbols["purgatory_start"]["st_info"]["type"] == "STT_FUNC"
        assert elf.get_section(symbols["purgatory_start"]["st_shndx"]).name == ".text"
        assert "stack_end" in symbols
        assert not [s for s in symbols.values() if s["st_shndx"] == "SHN_UNDEF"]


def test_defaults_in_object(purgatory_object):
    linked = purgatory_object.link(PURGATORY)
    assert linked.get_symbol("serial_base") == struct.pack("<H", 0x3f8)
    for name in ABI_SYMBOLS:
        if name != "serial_base":
            assert linked.get_symbol(name) == bytes(ABI_SYMBOLS[name]), name


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is needed to check the purgatory (install gcc and binutils)"
    return path


def test_emulated_cpu_faults_on_sse():
    # The harness's CR4 has OSFXSR clear, as after relocate_kernel: every run above would
    # have failed had the purgatory executed an SSE instruction.
    from unicorn import UcError

    machine = Machine()
    machine.uc.mem_write(CRASH_BASE, bytes.fromhex("660fefc0f4"))     # pxor %xmm0,%xmm0; hlt
    with pytest.raises(UcError):
        machine.uc.emu_start(CRASH_BASE, 0, count=2)


def test_object_has_no_simd_or_x87_instructions():
    listing = subprocess.run([_tool("objdump"), "-d", "--no-show-raw-insn", str(SHIPPED)],
                             check=True, capture_output=True, text=True).stdout
    assert "<purgatory_start>:" in listing
    bad = [line for line in listing.splitlines()
           if re.search(r"%(x|y|z)mm\d|%mm\d|%st\b|%st\(|%k[0-7]\b", line)]
    assert bad == []


def test_build_reproduces_the_shipped_object(tmp_path):
    _tool("gcc")
    outputs = []
    for n in range(2):
        out = tmp_path / f"build{n}.o"
        run = subprocess.run([str(REPO / "scripts" / "build-purgatory"), "x86_64", "-o", str(out)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1], "two builds differ: the build is not reproducible"
    shipped = SHIPPED.read_bytes()
    assert outputs[0] == shipped, (
        "scripts/build-purgatory does not reproduce kexec_py/data/purgatory/x86_64.o: rebuild and "
        f"commit it, or check the toolchain ({run.stdout.strip()})")
