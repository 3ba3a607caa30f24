"""The i386 crash and load plans on a snapshot of a qemu-system-i386 guest running Debian's
686-pae kernel, checked by parsing the produced bytes back with independent parsers
(pyelftools for the ELF32 core header, construct for the zero page)."""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys

import pytest
from elftools.elf.elffile import ELFFile

from kexec_py.arch import i386 as I
from kexec_py.arch.base import LoadInputs
from kexec_py.errors import UnsupportedImage
from kexec_py.image.open import open_kernel
from kexec_py.plan.purgatory import load_purgatory, sha256_of_segments
from kexec_py.plan.ranges import GiB, MiB, Range
from kexec_py.preflight import check_plan
from kexec_py.record import replace
from kexec_py.structs import bootparam as bp
from kexec_py.system.view import SystemView
from tests import guard
from tests.conftest import SYSTEMS, check_acpi_rsdp

SNAPSHOT = SYSTEMS / "i386-qemu-1cpu"
INITRD = bytes(range(256)) * 4000 + b"tail"
LOWMEM_END = 0x36FFE000          # "HighMem [mem 0x36ffe000-..." in the snapshot guest's boot log


@pytest.fixture(scope="module")
def kernel_path():
    """Debian 12's linux-image-686-pae bzImage (fetched into the guest cache on first use)."""
    from tests.guest.fetch import fetch
    return fetch("i386").kernel


@pytest.fixture(scope="module")
def image(kernel_path):
    return open_kernel(kernel_path, I.I386().formats)


@pytest.fixture(scope="module")
def facts():
    return I.I386().read_crash_facts(SystemView(SNAPSHOT))


def crash_plan(image, facts, **inputs):
    return I.I386().plan_crash(image, LoadInputs(cmdline="console=ttyS0 irqpoll", initrd=INITRD,
                                                                  page_size=SystemView(SNAPSHOT).page_size, **inputs),
                               facts, load_purgatory("i386"))


def seg(plan, name):
    (s,) = [s for s in plan.segments if s.name == name]
    return s


def core_elf(plan) -> ELFFile:
    return ELFFile(io.BytesIO(bytes(seg(plan, "elfcorehdr").buf)))


def test_image_is_a_relocatable_32bit_bzimage(image):
    assert image.relocatable and image.version >= 0x0205
    assert image.kernel_alignment == 16 * MiB and image.pref_address == 16 * MiB


def test_facts_from_the_snapshot(facts):
    assert facts.crash_regions == (Range(0x3000000, 0x1B000000),)
    assert facts.page_offset == 0xC0000000
    assert facts.lowmem_limit == LOWMEM_END, "read from the ELF32 /proc/kcore headers"
    assert facts.kernel_text is None


def test_every_segment_inside_the_crash_region(image, facts):
    p = crash_plan(image, facts)
    check_plan(p, I.I386())
    assert all(facts.crash_regions[-1].contains(s.range) for s in p.segments)
    assert p.flags == 1, "KEXEC_ON_CRASH | KEXEC_ARCH_DEFAULT, as kexec-tools on i386"
    assert seg(p, "purgatory").range.contains(p.entry) and p.entry < 2 * GiB
    kernel = seg(p, "kernel")
    assert kernel.mem % image.kernel_alignment == 0 and kernel.mem >= image.pref_address
    assert kernel.mem == facts.crash_regions[-1].start, "bottom-up, as kexec-tools places a 32-bit kernel"
    assert bytes(kernel.buf[:64]) == bytes(image.payload[:64])
    m = re.fullmatch(r"console=ttyS0 irqpoll acpi_rsdp=(0x[0-9a-f]+) elfcorehdr=(\d+)K", p.cmdline)
    assert m, p.cmdline
    check_acpi_rsdp(SNAPSHOT, int(m.group(1), 16))
    assert int(m.group(2)) * 1024 == seg(p, "elfcorehdr").mem


def test_elf32_core_header(image, facts):
    p = crash_plan(image, facts)
    elf = core_elf(p)
    assert elf.elfclass == 32 and elf["e_machine"] == "EM_386" and elf["e_type"] == "ET_CORE"
    phdrs = [elf.get_segment(i) for i in range(elf.num_segments())]
    notes = [ph for ph in phdrs if ph["p_type"] == "PT_NOTE"]
    assert [(n["p_paddr"], n["p_filesz"]) for n in notes] == list(facts.notes)
    loads = [(ph["p_paddr"], ph["p_memsz"], ph["p_vaddr"], ph["p_offset"]) for ph in phdrs if ph["p_type"] == "PT_LOAD"]
    backup = seg(p, "backup")
    assert loads[0] == (0x1000, 0x9EC00, 0xC0001000, backup.mem), "the low RAM points at its backup copy"
    region = facts.crash_regions[0]
    for paddr, size, vaddr, offset in loads:
        assert not Range.sized(paddr, size).overlaps(region)
        if paddr + size <= LOWMEM_END:
            assert vaddr == 0xC0000000 + paddr
        else:
            assert paddr >= LOWMEM_END and vaddr == 0xFFFFFFFF, "highmem has no linear address"
    assert (LOWMEM_END, 0x5FFE0000 - LOWMEM_END, 0xFFFFFFFF, LOWMEM_END) in loads, "split at the lowmem end"


@pytest.mark.parametrize("forced", [32, 64])
def test_core_class_can_be_forced(image, facts, forced):
    elf = core_elf(crash_plan(image, replace(facts, core_class=forced)))
    assert elf.elfclass == forced and elf["e_machine"] == "EM_386"


def test_elf64_when_ram_ends_above_4g(image, facts):
    big = replace(facts, ram=(*facts.ram, Range(4 * GiB, 5 * GiB)))
    elf = core_elf(crash_plan(image, big))
    assert elf.elfclass == 64
    loads = [elf.get_segment(i) for i in range(elf.num_segments()) if elf.get_segment(i)["p_type"] == "PT_LOAD"]
    assert (loads[-1]["p_paddr"], loads[-1]["p_vaddr"]) == (4 * GiB, (1 << 64) - 1)


def test_capture_e820(image, facts):
    p = crash_plan(image, facts)
    zp = bp.boot_params.parse(bytes(seg(p, "setup").buf[:4096]))
    ram = [(e.addr, e.addr + e.size) for e in zp.e820_table[:zp.e820_entries] if e.type == 1]
    top = min(seg(p, "elfcorehdr").mem, seg(p, "backup").mem)
    assert ram == [(0x1000, 0x9FC00), (facts.crash_regions[0].start, top)]


def test_zero_page_and_command_line(image, facts):
    p = crash_plan(image, facts)
    setup, initrd = seg(p, "setup"), seg(p, "initrd")
    zp = bp.boot_params.parse(bytes(setup.buf[:4096]))
    off = zp.hdr.cmd_line_ptr - setup.mem
    assert bytes(setup.buf[off:off + len(p.cmdline) + 1]) == p.cmdline.encode() + b"\0"
    assert (zp.hdr.ramdisk_image, zp.hdr.ramdisk_size) == (initrd.mem, len(INITRD))
    assert initrd.mem + initrd.memsz <= image.initrd_addr_max + 1
    assert zp.hdr.type_of_loader == 0xD0 and zp.hdr.header == b"HdrS"
    assert zp.ext_cmd_line_ptr == zp.ext_ramdisk_image == 0


def _linked(p):
    purg = seg(p, "purgatory")
    linked = load_purgatory("i386").link(purg.mem)
    linked.buf[:] = purg.buf
    return linked


def test_purgatory_registers_backup_and_digest(image, facts):
    p = crash_plan(image, facts)
    linked = _linked(p)
    regs = dict(zip(I.ENTRY32_REGS, struct.unpack("<9I", linked.get_symbol("entry32_regs"))))
    assert regs == dict(eax=0, ebx=0, ecx=0, edx=0, esi=seg(p, "setup").mem, edi=0, esp=0, ebp=0,
                        eip=seg(p, "kernel").mem)
    assert (linked.get_int("backup_src"), linked.get_int("backup_size")) == (0x1000, 0x9EC00)
    assert linked.get_int("backup_dst") == seg(p, "backup").mem
    assert linked.get_int("skip_checks") == 0
    _, digest = sha256_of_segments([s for s in p.segments if s.name != "purgatory"])
    assert linked.get_symbol("sha256_digest") == digest
    assert _linked(crash_plan(image, facts, no_checks=True)).get_int("skip_checks") == 1


def test_non_relocatable_kernel_refused_for_crash(kernel_path, facts):
    data = bytearray(kernel_path.read_bytes())
    data[0x234] = 0                                         # relocatable_kernel
    image = I.parse_bzimage32(bytes(data), path="fixed-bzImage")
    with pytest.raises(UnsupportedImage, match="not relocatable"):
        crash_plan(image, facts)


def test_load_plan_for_kexec_e(image):
    arch = I.I386()
    p = arch.plan_load(image, LoadInputs(cmdline="console=ttyS0", initrd=INITRD,
                                                    page_size=SystemView(SNAPSHOT).page_size),
                       arch.read_load_facts(SystemView(SNAPSHOT)), load_purgatory("i386"))
    check_plan(p, I.I386())
    assert p.flags == 0
    assert seg(p, "setup").range.end <= 640 * 1024, "the setup segment stays in conventional memory"
    assert seg(p, "purgatory").range.end <= 2 * GiB
    kernel = seg(p, "kernel")
    assert kernel.mem == 16 * MiB and kernel.range.end <= 0x38000000
    assert all(s.range.end <= 4 * GiB for s in p.segments)


def _cli(*args):
    cmd = [sys.executable, "-m", "kexec_py", "--arch", "i386", "--root", str(SNAPSHOT), *map(str, args)]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    env.pop("KEXEC_PY_RECORD", None)
    return subprocess.run(guard.guarded(cmd, kill=True), capture_output=True, text=True, env=env, timeout=120)


def test_cli_file_syscall_exits_253(kernel_path):
    done = _cli("-p", "-s", "--dry-run", kernel_path)
    assert done.returncode == 253, done.stderr
    assert "syscall kexec_file_load not available" in done.stderr


def test_cli_dry_run_crash_plan(kernel_path):
    done = _cli("-p", "--dry-run", kernel_path, "--append", "console=ttyS0")
    assert done.returncode == 0, done.stderr
    assert "kexec_load" in done.stdout and "ELF32" in done.stdout
