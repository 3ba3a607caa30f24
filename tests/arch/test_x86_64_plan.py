"""Golden properties of the x86_64 crash plan on snapshot fixtures, checked by
parsing the produced bytes back with independent parsers."""

import hashlib
import io
import re
import struct

import pytest
from elftools.elf.elffile import ELFFile

from kexec_py.arch.base import LoadInputs
from kexec_py.arch.x86_64 import ENTRY64_REGS, X86_64
from kexec_py.image.open import open_kernel
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.preflight import check_plan
from kexec_py.structs import bootparam as bp
from kexec_py.system.view import SystemView
from tests.conftest import check_acpi_rsdp, system_dirs

INITRD = bytes(range(256)) * 4000 + b"tail"


@pytest.fixture(params=system_dirs("x86_64"), ids=lambda p: p.name)
def plan(request, debian_kernel):
    arch = X86_64()
    sys = SystemView(request.param)
    image = open_kernel(debian_kernel, arch.formats)
    facts = arch.read_crash_facts(sys)
    p = arch.plan_crash(image, LoadInputs(cmdline="console=ttyS0 irqpoll", initrd=INITRD, page_size=sys.page_size), facts,
                        load_purgatory("x86_64"))
    return p, facts, image, request.param


def seg(plan, name):
    (s,) = [s for s in plan.segments if s.name == name]
    return s


def test_every_segment_inside_the_highest_crash_region(plan):
    p, facts, _, _ = plan
    check_plan(p, X86_64())
    region = facts.crash_regions[-1]
    assert all(region.contains(s.range) for s in p.segments)
    assert p.flags == 0x3E0001
    assert seg(p, "purgatory").range.contains(p.entry)


def test_cmdline_points_at_the_elfcorehdr(plan):
    p, facts, _, system = plan
    hdr = seg(p, "elfcorehdr")
    m = re.fullmatch(r"console=ttyS0 irqpoll(?: acpi_rsdp=(0x[0-9a-f]+))? elfcorehdr=(\d+)K", p.cmdline)
    assert m, p.cmdline
    assert int(m.group(2)) * 1024 == hdr.mem
    # A BIOS guest's capture kernel is told where ACPI is; an EFI guest's finds it through the
    # EFI system table it is handed; the hand-made snapshots have no firmware tables at all.
    bios_acpi = (system / "dmesg.txt").exists() or (system / "sys/kernel/boot_params").is_dir()
    if bios_acpi and not (system / "sys/firmware/efi").is_dir():
        assert m.group(1), f"no acpi_rsdp= for a BIOS guest: {p.cmdline}"
    if m.group(1):
        check_acpi_rsdp(system, int(m.group(1), 16))
    elf = ELFFile(io.BytesIO(bytes(hdr.buf)))
    assert elf.header.e_type == "ET_CORE"


def test_zero_page(plan):
    p, facts, image, _ = plan
    setup = seg(p, "setup")
    zp = bp.boot_params.parse(bytes(setup.buf[:4096]))
    cmd_addr = zp.hdr.cmd_line_ptr | zp.ext_cmd_line_ptr << 32
    off = cmd_addr - setup.mem
    assert bytes(setup.buf[off:off + len(p.cmdline) + 1]) == p.cmdline.encode() + b"\0"
    initrd = seg(p, "initrd")
    assert zp.hdr.ramdisk_image | zp.ext_ramdisk_image << 32 == initrd.mem
    assert zp.hdr.ramdisk_size == len(INITRD)
    assert bytes(initrd.buf) == INITRD
    assert zp.hdr.type_of_loader == 0xD0 and zp.hdr.header == b"HdrS"
    assert zp.hdr.init_size == image.init_size


def test_capture_e820_is_crash_memory_plus_backed_up_low_ram(plan):
    p, facts, _, _ = plan
    zp = bp.boot_params.parse(bytes(seg(p, "setup").buf[:4096]))
    e820 = [(e.addr, e.addr + e.size, e.type) for e in zp.e820_table[:zp.e820_entries]]
    ram = [(a, b) for a, b, t in e820 if t == 1]
    backup, hdr = seg(p, "backup"), seg(p, "elfcorehdr")
    assert ram[0][0] < 0xA0000 and ram[0][1] <= 0xA0000              # the low RAM, backed up
    for a, b in ram[1:]:
        assert any(r.start <= a and b <= r.end for r in facts.crash_regions)
        assert not (a < hdr.mem + hdr.memsz and hdr.mem < b)          # never the elfcorehdr
        assert not (a < backup.mem + backup.memsz and backup.mem < b)
    assert all(x[1] <= y[0] for x, y in zip(e820, e820[1:]))         # sorted, disjoint
    kernel = seg(p, "kernel")
    assert any(a <= kernel.mem and kernel.mem + kernel.memsz <= b for a, b in ram)


def test_purgatory_variables(plan):
    p, facts, _, _ = plan
    purg = seg(p, "purgatory")
    obj = load_purgatory("x86_64")
    linked = obj.link(purg.mem)
    buf = bytes(purg.buf)

    def sym(name):
        start = linked.symbol_addr(name) - purg.mem
        return buf[start:start + len(linked.get_symbol(name))]

    regs = dict(zip(ENTRY64_REGS, struct.unpack("<17Q", sym("entry64_regs"))))
    assert regs["rip"] == seg(p, "kernel").mem + 0x200
    assert regs["rsi"] == seg(p, "setup").mem
    assert purg.range.contains(regs["rsp"] - 1)
    assert struct.unpack("<Q", sym("backup_dst"))[0] == seg(p, "backup").mem
    src, size = struct.unpack("<Q", sym("backup_src"))[0], struct.unpack("<Q", sym("backup_size"))[0]
    assert src < 0xA0000 and src + size <= 0xA0000

    # the digest covers every other segment, zero padded to memsz, in address order
    h = hashlib.sha256()
    regions = struct.unpack("<32Q", sym("sha256_regions"))
    others = sorted((s for s in p.segments if s.name != "purgatory"), key=lambda s: s.mem)
    assert [(regions[2 * i], regions[2 * i + 1]) for i in range(len(others))] == [(s.mem, s.memsz) for s in others]
    for s in others:
        h.update(bytes(s.buf) + bytes(s.memsz - s.bufsz))
    assert sym("sha256_digest") == h.digest()


def test_highmem_fixture_uses_high_region_and_dumps_kmem(debian_kernel):
    (d,) = [p for p in system_dirs("x86_64") if p.name == "x86_64-highmem-handmade"]
    arch = X86_64()
    facts = arch.read_crash_facts(SystemView(d))
    assert len(facts.crash_regions) == 2
    p = arch.plan_crash(open_kernel(debian_kernel, arch.formats),
                        LoadInputs(cmdline="", initrd=None, page_size=SystemView(d).page_size),
                        facts, load_purgatory("x86_64"))
    assert all(s.mem >= 0x260000000 for s in p.segments)
    loads = [s.header for s in ELFFile(io.BytesIO(bytes(seg(p, "elfcorehdr").buf))).iter_segments()
             if s.header.p_type == "PT_LOAD"]
    spans = [(h.p_paddr, h.p_paddr + h.p_memsz) for h in loads]
    assert (0x280000000, 0x300000000) in spans or any(a <= 0x280000000 and 0x300000000 <= b for a, b in spans)
    for a, b in spans:                                    # neither crash region is dumped
        for r in facts.crash_regions:
            assert b <= r.start or r.end <= a
    assert len([h for h in ELFFile(io.BytesIO(bytes(seg(p, "elfcorehdr").buf))).iter_segments()
                if h.header.p_type == "PT_NOTE"]) == 5    # 4 CPUs + vmcoreinfo


def test_acpi_rsdp_from_efi_systab_when_boot_params_has_none(debian_kernel, tmp_path):
    import shutil
    root = tmp_path / "sys"
    shutil.copytree(system_dirs("x86_64-handmade")[0], root)
    (root / "sys/firmware/efi").mkdir(parents=True)
    (root / "sys/firmware/efi/systab").write_text("ACPI20=0x7fb7e014\nACPI=0x7fb7e000\nSMBIOS=0x7f9a0000\n")
    arch = X86_64()
    p = arch.plan_crash(open_kernel(debian_kernel, arch.formats),
                        LoadInputs(cmdline="", initrd=None, page_size=SystemView(root).page_size),
                        arch.read_crash_facts(SystemView(root)), load_purgatory("x86_64"))
    zp = bp.boot_params.parse(bytes(seg(p, "setup").buf[:4096]))
    assert zp.acpi_rsdp_addr == 0x7FB7E014


@pytest.mark.parametrize("name", ["x86_64-qemu-2cpu", "x86_64-qemu-6g", "x86_64-handmade"])
def test_normal_load_plan(debian_kernel, name):
    """-l: segments in RAM, no crash flag, no backup or elfcorehdr, the firmware map handed on."""
    (root,) = [p for p in system_dirs("x86_64") if p.name == name]
    arch = X86_64()
    view = SystemView(root)
    facts = arch.read_load_facts(view)
    p = arch.plan_load(open_kernel(debian_kernel, arch.formats),
                       LoadInputs(cmdline="quiet", initrd=INITRD, page_size=view.page_size),
                       facts, load_purgatory("x86_64"))
    check_plan(p, arch)
    assert p.flags == 0x3E0000 and p.cmdline == "quiet"
    assert sorted(s.name for s in p.segments) == ["initrd", "kernel", "purgatory", "setup"]
    zp = bp.boot_params.parse(bytes(seg(p, "setup").buf[:4096]))
    e820 = [(e.addr, e.addr + e.size, e.type) for e in zp.e820_table[:zp.e820_entries]]
    assert e820 == [(r.start, r.end, {"ram": 1, "reserved": 2, "acpi": 3, "nvs": 4}[k]) for r, k in facts.e820]
    assert any(t == 1 and a <= 0x100000 < b for a, b, t in e820)
    assert zp.alt_mem_k > 0                                        # RAM above 1 MiB reported
    assert seg(p, "kernel").mem >= 0x1000000                        # pref_address respected
    assert facts.source == ("/sys/firmware/memmap" if name.startswith("x86_64-qemu") else "/proc/iomem")
