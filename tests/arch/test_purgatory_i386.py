"""The real i386 purgatory, run in an emulator.

The shipped object (kexec_py/data/purgatory/i386.o) is linked by the Python
loader and run in unicorn in the state the 32-bit kernel's relocate_kernel
leaves the CPU in: 32-bit protected mode with paging off, CR4 clear (so any
SSE instruction faults), interrupts off, no usable GDT and no usable stack.
The test checks what the new kernel would see at its 32-bit entry point
(code32_start), or that control never gets there.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_32, Uc, UcError
from unicorn.x86_const import (
    UC_X86_INS_IN, UC_X86_INS_OUT, UC_X86_REG_CR0, UC_X86_REG_CR4, UC_X86_REG_CS, UC_X86_REG_DS,
    UC_X86_REG_EAX, UC_X86_REG_EBP, UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDI, UC_X86_REG_EDX,
    UC_X86_REG_EFLAGS, UC_X86_REG_EIP, UC_X86_REG_ES, UC_X86_REG_ESI, UC_X86_REG_ESP, UC_X86_REG_FS,
    UC_X86_REG_GDTR, UC_X86_REG_GS, UC_X86_REG_SS,
)

from kexec_py.arch.i386 import ENTRY32_REGS, link_purgatory32
from kexec_py.plan.plan import Segment
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.plan.ranges import Range
from tests.arch.test_purgatory_x86_64 import LCR_8N1, LCR_DLAB, Uart16550, uart_divisor

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kexec_py" / "data" / "purgatory" / "i386.o"

MiB = 1 << 20
LOW_MEM = Range(0, 640 << 10)            # the x86 kdump backup source [0, 640 KiB)
CRASH_BASE = 0x1000_0000                 # a pretend "Crash kernel" reservation below 512 MiB
CRASH_SIZE = 32 * MiB
PURGATORY = Range.sized(CRASH_BASE + 0x1000, 0x2000)
BACKUP_DST = CRASH_BASE + 1 * MiB
BOOT_PARAMS = CRASH_BASE + 2 * MiB
KERNEL = CRASH_BASE + 16 * MiB           # code32_start of a relocated kernel
KERNEL_FILE = 1 * MiB + 123
KERNEL_MEM = 1 * MiB + 512 * 1024
EMU_TIMEOUT_US = 120 * 1_000_000

UC_REG = {"eax": UC_X86_REG_EAX, "ebx": UC_X86_REG_EBX, "ecx": UC_X86_REG_ECX, "edx": UC_X86_REG_EDX,
          "esi": UC_X86_REG_ESI, "edi": UC_X86_REG_EDI, "esp": UC_X86_REG_ESP, "ebp": UC_X86_REG_EBP,
          "eip": UC_X86_REG_EIP}
UC_SEG = {"cs": UC_X86_REG_CS, "ds": UC_X86_REG_DS, "es": UC_X86_REG_ES, "ss": UC_X86_REG_SS,
          "fs": UC_X86_REG_FS, "gs": UC_X86_REG_GS}
LOW_MEM_PATTERN = bytes((i * 7 + (i >> 8) * 13) & 0xFF for i in range(LOW_MEM.size))


@dataclass
class Outcome:
    reached_kernel: bool
    regs: dict[str, int]
    segs: dict[str, int]
    eflags: int
    serial: bytes
    ports: set[int]
    uart: Uart16550
    uc: Uc

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(addr, size))


def machine(serial_base: int = 0x3f8) -> tuple[Uc, Uart16550, set[int]]:
    """An i386 CPU as relocate_kernel hands it over: protected mode, paging off, nothing else;
    a 16550 UART at ``serial_base``."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, LOW_MEM.size)
    uc.mem_map(CRASH_BASE, CRASH_SIZE)
    uc.reg_write(UC_X86_REG_CR0, 0x11)                        # PE | ET, no PG
    uc.reg_write(UC_X86_REG_CR4, 0)                           # OSFXSR clear: SSE faults
    uc.reg_write(UC_X86_REG_GDTR, (0, 0x7654_3000, 0x17, 0))   # a table that is not there
    uc.reg_write(UC_X86_REG_ESP, 0x7fff_f000)                  # unmapped: a push before lss faults
    uc.reg_write(UC_X86_REG_EFLAGS, 0x2)
    uart, ports = Uart16550(serial_base), set()

    def port_in(uc, port, size, _):
        ports.add(port)
        return uart.read(port) if uart.owns(port) else 0xFF

    def port_out(uc, port, size, value, _):
        ports.add(port)
        if uart.owns(port):
            uart.write(port, value & 0xFF)

    uc.hook_add(UC_HOOK_INSN, port_in, None, 1, 0, UC_X86_INS_IN)
    uc.hook_add(UC_HOOK_INSN, port_out, None, 1, 0, UC_X86_INS_OUT)
    return uc, uart, ports


def world(seed: int = 1) -> list[Segment]:
    rnd = random.Random(seed)
    return [Segment("backup", b"", BACKUP_DST, LOW_MEM.size),
            Segment("setup", rnd.randbytes(4096), BOOT_PARAMS, 4096),
            Segment("kernel", rnd.randbytes(KERNEL_FILE), KERNEL, KERNEL_MEM)]


@pytest.fixture(scope="module")
def obj():
    return load_purgatory("i386")


def run(obj, *, regs=None, corrupt=None, digest=None, regions=None, skip_checks=False, backup=True,
        console_serial=0, serial_base=None, serial_baud=None, segments=None) -> Outcome:
    segments = world() if segments is None else segments
    regs = dict(esi=BOOT_PARAMS, eip=KERNEL) if regs is None else regs
    seg, entry = link_purgatory32(obj, PURGATORY, segments, regs=regs, skip_checks=skip_checks,
                                  backup=(LOW_MEM, BACKUP_DST) if backup else None)
    linked = obj.link(PURGATORY.start)
    linked.buf[:] = seg.buf
    if digest is not None:
        linked.set_symbol("sha256_digest", digest)
    if regions is not None:
        from kexec_py.plan.purgatory import pack_sha256_regions
        linked.set_symbol("sha256_regions", pack_sha256_regions(regions))
    linked.set_int("console_serial", console_serial)
    if serial_base is not None:
        linked.set_int("serial_base", serial_base)
    if serial_baud is not None:
        linked.set_int("serial_baud", serial_baud)
    uc, uart, ports = machine(0x3f8 if serial_base is None else serial_base)
    uc.mem_write(0, LOW_MEM_PATTERN)
    for s in segments:
        uc.mem_write(s.mem, bytes(s.buf))
    uc.mem_write(PURGATORY.start, bytes(linked.buf))
    if corrupt is not None:
        corrupt(uc)
    kernel_entry = regs.get("eip", KERNEL) or KERNEL
    uc.emu_start(entry, kernel_entry, timeout=EMU_TIMEOUT_US)
    return Outcome(reached_kernel=uc.reg_read(UC_X86_REG_EIP) == kernel_entry,
                   regs={n: uc.reg_read(r) for n, r in UC_REG.items()},
                   segs={n: uc.reg_read(r) for n, r in UC_SEG.items()},
                   eflags=uc.reg_read(UC_X86_REG_EFLAGS), serial=bytes(uart.text), ports=ports,
                   uart=uart, uc=uc)


def assert_halted(out: Outcome, obj) -> None:
    halt = obj.link(PURGATORY.start).symbol_addr("purgatory_halt")
    assert not out.reached_kernel
    assert halt < out.regs["eip"] <= halt + 4, f"stopped at {out.regs['eip']:#x}, not in the halt loop"
    assert out.read(out.regs["eip"] - 1, 1) == b"\xf4"
    assert out.eflags & 0x200 == 0, "interrupts must stay off"


def test_good_digest_enters_kernel_per_32bit_boot_protocol(obj):
    out = run(obj)
    assert out.reached_kernel
    assert out.regs["esi"] == BOOT_PARAMS and out.regs["eip"] == KERNEL
    assert out.regs["ebp"] == out.regs["edi"] == out.regs["ebx"] == 0
    assert out.regs["eax"] == out.regs["ecx"] == out.regs["edx"] == 0
    stack_end = obj.link(PURGATORY.start).symbol_addr("stack_end")
    assert stack_end - 4096 <= out.regs["esp"] <= stack_end, "esp 0: the purgatory's own stack"
    assert out.segs["cs"] == 0x10
    assert out.segs["ds"] == out.segs["es"] == out.segs["ss"] == 0x18
    assert out.eflags & 0x600 == 0, "interrupts off and direction flag clear"
    assert out.uc.reg_read(UC_X86_REG_CR0) & 0x8000_0001 == 1, "protected mode, paging off"
    assert out.read(BACKUP_DST, LOW_MEM.size) == LOW_MEM_PATTERN
    assert out.ports == set(), "console_serial=0 must not touch any I/O port"


def test_every_register_is_passed_through(obj):
    regs = {name: 0x1111_1111 * (n + 1) & 0xFFFF_FFF0 for n, name in enumerate(ENTRY32_REGS)}
    regs.update(esp=BOOT_PARAMS - 0x80, eip=KERNEL)
    out = run(obj, regs=regs)
    assert out.reached_kernel and out.regs == regs


def test_kernel_sees_flat_32bit_gdt(obj):
    out = run(obj)
    _, base, limit, _ = out.uc.reg_read(UC_X86_REG_GDTR)
    assert PURGATORY.contains(Range.sized(base, limit + 1)) and limit >= 0x1F
    code, data = struct.unpack("<2Q", out.read(base + 0x10, 16))
    accessed = 1 << 40                                          # set by the CPU on a segment load
    assert code & ~accessed == 0x00CF_9A00_0000_FFFF, "flat 4 GiB execute/read, 32-bit, present"
    assert data & ~accessed == 0x00CF_9200_0000_FFFF, "flat 4 GiB read/write, present"


@pytest.mark.parametrize("addr", [KERNEL + 0x1234, KERNEL + KERNEL_FILE + 77, BOOT_PARAMS + 0x1F1,
                                  BACKUP_DST + LOW_MEM.size - 1],
                         ids=["kernel-bytes", "kernel-zero-tail", "boot-params", "backup-area"])
def test_one_flipped_byte_halts_before_kernel_and_backup(obj, addr):
    def flip(uc):
        uc.mem_write(addr, bytes([uc.mem_read(addr, 1)[0] ^ 1]))

    out = run(obj, corrupt=flip)
    assert_halted(out, obj)
    backup = out.read(BACKUP_DST, LOW_MEM.size)
    expected = bytes(LOW_MEM.size - 1) + b"\x01" if addr == BACKUP_DST + LOW_MEM.size - 1 \
        else bytes(LOW_MEM.size)
    assert backup == expected, "the backup must not run before the check passes"


def test_skip_checks_enters_despite_bad_digest(obj):
    out = run(obj, digest=b"\xaa" * 32, skip_checks=True)
    assert out.reached_kernel
    assert out.read(BACKUP_DST, LOW_MEM.size) == LOW_MEM_PATTERN


def test_no_backup_when_not_a_crash_load(obj):
    out = run(obj, backup=False)
    assert out.reached_kernel
    assert out.read(BACKUP_DST, LOW_MEM.size) == bytes(LOW_MEM.size)


def test_zero_eip_halts(obj):
    assert_halted(run(obj, regs=dict(esi=BOOT_PARAMS, eip=0)), obj)


@pytest.mark.parametrize("regions", [[], [(KERNEL + 1, 55)], [(KERNEL + 5, 64), (KERNEL + 900, 65)],
                                     [(KERNEL + i * 1000 + i, 37 * i + 5) for i in range(16)]],
                         ids=["empty", "one-block", "two", "sixteen"])
def test_sha256_matches_hashlib(obj, regions):
    blob = random.Random(len(regions)).randbytes(KERNEL_MEM)
    segments = [Segment("kernel", blob, KERNEL, KERNEL_MEM)]
    digest = hashlib.sha256(b"".join(blob[s - KERNEL:s - KERNEL + n] for s, n in regions)).digest()
    assert run(obj, segments=segments, regions=regions, digest=digest, backup=False).reached_kernel
    bad = run(obj, segments=segments, regions=regions, backup=False, digest=digest[:-1] + b"\x00")
    assert_halted(bad, obj)


def test_serial_console(obj):
    out = run(obj, console_serial=1, serial_base=0x2f8)
    assert out.reached_kernel
    assert out.serial.decode().endswith("sha256 ok\r\nkexec-py purgatory: low memory backed up\r\n"
                                        "kexec-py purgatory: jumping to kernel\r\n")
    assert out.ports == {0x2f8, 0x2fd}


PROGRESS = ("kexec-py purgatory: started\r\nkexec-py purgatory: sha256 ok\r\n"
            "kexec-py purgatory: low memory backed up\r\nkexec-py purgatory: jumping to kernel\r\n")


@pytest.mark.parametrize("baud", [9600, 57600, 115200, 300])      # 300: a divisor high byte (0x01)
def test_serial_baud_programs_the_uart_before_the_first_character(obj, baud):
    out = run(obj, console_serial=1, serial_base=0x2f8, serial_baud=baud)
    assert out.reached_kernel
    divisor, writes = uart_divisor(baud), out.uart.writes
    first_char = [reg for reg, _ in writes].index("THR")
    setup, after = writes[:first_char], writes[first_char:]
    assert [w for w in setup if w[0] in ("LCR", "DLL", "DLM")] == [
        ("LCR", LCR_DLAB), ("DLL", divisor & 0xFF), ("DLM", divisor >> 8), ("LCR", LCR_8N1)]
    assert {reg for reg, _ in setup} <= {"LCR", "DLL", "DLM", "IER", "FCR"}
    assert all(value == 0 for reg, value in setup if reg == "IER"), "interrupts off"
    assert all(value & 0x01 for reg, value in setup if reg == "FCR"), "FIFOs on"
    assert {reg for reg, _ in after} == {"THR"}, "the UART is set up once, before the first character"
    assert out.uart.line == {(LCR_8N1, divisor)}, "every character goes out at the new rate, 8N1"
    assert out.serial.decode() == PROGRESS
    assert out.ports <= set(range(0x2f8, 0x2fe))


@pytest.mark.parametrize("baud", [0, 230400, 1])                 # keep / no 16-bit divisor
def test_serial_baud_without_a_divisor_leaves_the_uart_alone(obj, baud):
    out = run(obj, console_serial=1, serial_base=0x2f8, serial_baud=baud)
    assert out.reached_kernel
    assert {reg for reg, _ in out.uart.writes} == {"THR"}, "no LCR, DLL or DLM write (nor any other)"
    assert out.serial.decode() == PROGRESS
    assert out.ports == {0x2f8, 0x2fd}


def test_serial_baud_without_console_serial_touches_no_port(obj):
    out = run(obj, console_serial=0, serial_base=0x2f8, serial_baud=9600)
    assert out.reached_kernel and out.ports == set()


ABI_SYMBOLS = {"sha256_regions": 256, "sha256_digest": 32, "skip_checks": 1, "backup_src": 8,
               "backup_dst": 8, "backup_size": 8, "console_serial": 1, "serial_base": 2,
               "serial_baud": 4, "entry32_regs": 36}


def test_object_symbols_are_the_loader_abi():
    from elftools.elf.elffile import ELFFile

    with SHIPPED.open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_REL" and elf["e_machine"] == "EM_386" and elf.elfclass == 32
        symbols = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()
                   if s["st_info"]["bind"] == "STB_GLOBAL"}
        for name, size in ABI_SYMBOLS.items():
            assert (name, symbols[name]["st_size"]) == (name, size)
            assert elf.get_section(symbols[name]["st_shndx"]).name == ".data", name
        assert "stack_end" in symbols and "purgatory_start" in symbols
        assert not [s for s in symbols.values() if s["st_shndx"] == "SHN_UNDEF"]


def test_emulated_cpu_faults_on_sse():
    uc, _, _ = machine()
    uc.mem_write(CRASH_BASE, bytes.fromhex("660fefc0f4"))     # pxor %xmm0,%xmm0; hlt
    with pytest.raises(UcError):
        uc.emu_start(CRASH_BASE, 0, count=2)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is needed to check the purgatory (install gcc and binutils)"
    return path


def test_object_has_no_simd_or_x87_instructions():
    listing = subprocess.run([_tool("objdump"), "-d", "--no-show-raw-insn", str(SHIPPED)],
                             check=True, capture_output=True, text=True).stdout
    assert "<purgatory_start>:" in listing
    assert [ln for ln in listing.splitlines() if re.search(r"%(x|y|z)mm\d|%mm\d|%st\b|%st\(", ln)] == []


def test_build_reproduces_the_shipped_object(tmp_path):
    _tool("gcc")
    outputs = []
    for n in range(2):
        out = tmp_path / f"build{n}.o"
        done = subprocess.run([str(REPO / "scripts" / "build-purgatory"), "i386", "-o", str(out)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1], "two builds differ: the build is not reproducible"
    assert outputs[0] == SHIPPED.read_bytes(), "rebuild kexec_py/data/purgatory/i386.o and commit it"
