"""The arm64 plans on the snapshot of a QEMU guest (tests/fixtures/systems/arm64-qemu-2cpu),
checked by reading the produced bytes back: the ELF core header with pyelftools, the
device tree with our parser, the purgatory's variables by symbol."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kexec_py.arch.arm64 import Arm64
from kexec_py.system.kcore import kcore_vmcoreinfo
from kexec_py.arch.base import LoadInputs
from kexec_py.image.arm64_image import parse_arm64_image
from kexec_py.plan.devicetree import parse_dtb
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.plan.ranges import Range
from kexec_py.preflight import check_plan
from kexec_py.system.view import SystemView
from tests.image.test_arm64_image import make_image

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/systems/arm64-qemu-2cpu"
CRASH = Range(0x8240_0000, 0x9a40_0000)
INITRD = bytes(range(256)) * 3000 + b"tail"
MiB = 1 << 20


@pytest.fixture
def crash_plan():
    arch, sys = Arm64(), SystemView(FIXTURE)
    image = parse_arm64_image(make_image(image_size=24 * MiB, size=1 * MiB), path="Image")
    facts = arch.read_crash_facts(sys)
    plan = arch.plan_crash(image, LoadInputs(cmdline="console=ttyAMA0 irqpoll", initrd=INITRD,
                                                      page_size=sys.page_size), facts,
                           load_purgatory("arm64"))
    return plan, facts


def seg(plan, name):
    (s,) = [s for s in plan.segments if s.name == name]
    return s


def test_segments_lie_in_the_crash_region_and_pass_the_kernels_checks(crash_plan):
    plan, _ = crash_plan
    check_plan(plan, Arm64())
    assert all(CRASH.contains(s.range) for s in plan.segments)
    assert seg(plan, "kernel").mem == CRASH.start          # 2 MiB aligned, text_offset 0
    assert plan.entry == seg(plan, "purgatory").mem + (plan.entry - seg(plan, "purgatory").mem)
    assert seg(plan, "purgatory").range.contains(plan.entry)


def test_elf_core_header_maps_linear_memory_and_the_kernel_image(crash_plan):
    plan, _ = crash_plan
    elf = ELFFile(io.BytesIO(bytes(seg(plan, "elfcorehdr").buf)))
    assert elf["e_machine"] == "EM_AARCH64" and elf["e_type"] == "ET_CORE"
    loads = [s.header for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    text, *ram = loads
    # kcore: _text at 0xffffa11d5f800000 is physical 0x40200000 (kimage_voffset), _end - _text bytes
    assert (text.p_vaddr, text.p_paddr, text.p_memsz) == (0xFFFFA11D5F800000, 0x40200000, 0x1AA0000)
    # linear map: (p - PHYS_OFFSET) | PAGE_OFFSET with PHYS_OFFSET = 0xffffe04680000000, VA_BITS 48
    assert [(r.p_paddr, r.p_vaddr, r.p_memsz) for r in ram] == [
        (0x40000000, 0xFFFF1FB9C0000000, CRASH.start - 0x40000000),
        (CRASH.end, 0xFFFF1FB9C0000000 + CRASH.end - 0x40000000, 0xA0000000 - CRASH.end)]
    assert all(r.p_offset == r.p_paddr for r in loads)
    assert sum(r.p_memsz for r in loads) < 2 << 30          # 2.0.25's was near 2**64


def test_vmcore_dmesg_can_translate_the_printk_symbols(crash_plan):
    plan, _ = crash_plan
    info = kcore_vmcoreinfo((FIXTURE / "proc/kcore").read_bytes())
    elf = ELFFile(io.BytesIO(bytes(seg(plan, "elfcorehdr").buf)))
    loads = [s.header for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    for name in ("prb", "printk_rb_static", "clear_seq", "_stext"):
        vaddr = int(info[f"SYMBOL({name})"], 16)
        assert any(p.p_vaddr <= vaddr < p.p_vaddr + p.p_memsz for p in loads), name


def test_notes_are_the_crash_notes_then_vmcoreinfo(crash_plan):
    plan, _ = crash_plan
    elf = ELFFile(io.BytesIO(bytes(seg(plan, "elfcorehdr").buf)))
    notes = [(s["p_paddr"], s["p_memsz"]) for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
    cpu0 = int((FIXTURE / "sys/devices/system/cpu/cpu0/crash_notes").read_text(), 16)
    assert notes[0][0] == cpu0 and notes[-1] == (0x4A19E000, 0x1024) and len(notes) == 3


def test_device_tree_tells_the_capture_kernel_everything(crash_plan):
    plan, _ = crash_plan
    chosen = parse_dtb(bytes(seg(plan, "dtb").buf)).root.child("chosen")
    be = lambda raw: [int.from_bytes(raw[i:i + 8], "big") for i in range(0, len(raw), 8)]  # noqa: E731
    hdr, initrd = seg(plan, "elfcorehdr"), seg(plan, "initrd")
    assert chosen.props["bootargs"] == b"console=ttyAMA0 irqpoll\0"
    assert be(chosen.props["linux,elfcorehdr"]) == [hdr.mem, hdr.memsz]
    assert be(chosen.props["linux,usable-memory-range"]) == [CRASH.start, CRASH.size]
    assert be(chosen.props["linux,initrd-start"] + chosen.props["linux,initrd-end"]) == \
        [initrd.mem, initrd.mem + len(INITRD)]
    assert chosen.props["kaslr-seed"] != bytes(8) and len(chosen.props["rng-seed"]) == 64


def test_purgatory_enters_the_kernel_with_the_dtb_and_checks_every_other_segment(crash_plan):
    plan, _ = crash_plan
    purg = seg(plan, "purgatory")
    linked = load_purgatory("arm64").link(purg.mem)
    linked.buf[:] = purg.buf

    assert linked.get_int("kernel_entry") == seg(plan, "kernel").mem
    assert linked.get_int("kernel_dtb") == seg(plan, "dtb").mem
    others = sorted((s for s in plan.segments if s.name != "purgatory"), key=lambda s: s.mem)
    h = hashlib.sha256()
    for s in others:
        h.update(bytes(s.buf) + bytes(s.memsz - s.bufsz))
    assert linked.get_symbol("sha256_digest") == h.digest()
    regions = struct.unpack("<32Q", linked.get_symbol("sha256_regions"))
    assert list(zip(regions[::2], regions[1::2]))[:len(others)] == [(s.mem, s.memsz) for s in others]


def test_plain_load_keeps_out_of_reserved_memory():
    arch, sys = Arm64(), SystemView(FIXTURE)
    image = parse_arm64_image(make_image(image_size=24 * MiB, size=1 * MiB), path="Image")
    facts = arch.read_load_facts(sys)
    plan = arch.plan_load(image, LoadInputs(cmdline="console=ttyAMA0", initrd=INITRD, page_size=sys.page_size), facts,
                          load_purgatory("arm64"))
    check_plan(plan, Arm64())
    reserved = [Range(0x41580000, 0x41A00000), Range(0x48000000, 0x4A127000), Range(0x9A400000, 0x9FC00000)]
    assert not any(s.range.overlaps(r) for s in plan.segments for r in reserved)
    assert seg(plan, "kernel").mem % (2 * MiB) == 0
    assert "linux,elfcorehdr" not in parse_dtb(bytes(seg(plan, "dtb").buf)).root.child("chosen").props


def test_cli_dry_run_on_the_fixture(tmp_path, capsys):
    from kexec_py.cli import main
    kernel = tmp_path / "Image.gz"
    import gzip
    kernel.write_bytes(gzip.compress(make_image(image_size=24 * MiB)))
    with pytest.raises(SystemExit) as done:
        main(["-p", "-c", "--dry-run", "--arch", "arm64", "--root", str(FIXTURE), str(kernel),
              "--append", "console=ttyAMA0"])
    out = capsys.readouterr().out
    assert done.value.code in (0, None) and "KEXEC_ARCH=183" in out and "kernel image map 0xffffa11d5f800000 -> 0x40200000" in out


def test_a_64k_page_kernel_gets_64k_aligned_segments(tmp_path, capsys, monkeypatch):
    """The running kernel's page size (here 64 KiB, from the snapshot's auxiliary vector)
    decides every segment's alignment, from the snapshot through the whole CLI."""
    import shutil
    import struct

    from kexec_py import cli
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root)
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/auxv").write_bytes(struct.pack("<6Q", 16, 0xFF, 6, 0x10000, 0, 0))
    image = tmp_path / "Image"
    image.write_bytes(make_image(image_size=24 * MiB, size=1 * MiB))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(INITRD)                       # 768004 bytes: not a multiple of 64 KiB
    monkeypatch.delenv("KEXEC_PY_RECORD", raising=False)
    segments = {}
    for page in (0x10000, 0x1000):
        (root / "proc/self/auxv").write_bytes(struct.pack("<6Q", 16, 0xFF, 6, page, 0, 0))
        with pytest.raises(SystemExit) as done:
            cli.main(["--root", str(root), "--arch", "arm64", "--dry-run", "-p", "-c", str(image),
                      "--initrd", str(initrd), "--append", "console=ttyAMA0"])
        assert done.value.code == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")][1:]
        segments[page] = {name: (int(mem, 16), int(memsz, 16)) for name, mem, memsz, _ in rows}
    for name, (mem, memsz) in segments[0x10000].items():
        assert mem % 0x10000 == 0 and memsz % 0x10000 == 0, f"{name} {mem:#x}+{memsz:#x}"
        assert CRASH.contains(Range(mem, mem + memsz))
    assert any(mem % 0x10000 or memsz % 0x10000 for mem, memsz in segments[0x1000].values()), \
        "on 4 KiB pages the same load packs tighter"


def test_without_sys_firmware_fdt_the_live_tree_is_used(tmp_path):
    """/proc/device-tree alone (as on ppc64) gives the same capture-kernel device tree."""
    import shutil
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root)
    (root / "sys/firmware/fdt").unlink()
    arch = Arm64()
    image = parse_arm64_image(make_image(image_size=24 * MiB, size=1 * MiB), path="Image")
    trees = []
    for where in (FIXTURE, root):
        sys = SystemView(where)
        plan = arch.plan_crash(image, LoadInputs(cmdline="console=ttyAMA0", initrd=INITRD, page_size=sys.page_size),
                               arch.read_crash_facts(sys), load_purgatory("arm64"))
        check_plan(plan, arch)
        trees.append(parse_dtb(bytes(seg(plan, "dtb").buf)))
    chosen = [t.root.child("chosen").props for t in trees]
    for name in ("bootargs", "linux,elfcorehdr", "linux,usable-memory-range", "linux,initrd-start"):
        assert chosen[1][name] == chosen[0][name]
    assert trees[1].root.child("memory@40000000").props == trees[0].root.child("memory@40000000").props
