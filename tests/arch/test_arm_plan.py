"""The 32-bit arm plans, through the CLI with --dry-run, on snapshots captured from QEMU guests
running Debian's armmp-lpae (virt) and armmp (virt,highmem=off) kernels, with those very
zImages. Expected values come from the snapshots' own /proc/iomem (where the kernel ran,
how far it reached), kexec-tools 2.0.25's measured command line for the same guest
(next-arches-facts.md), dtc's and pyelftools' parses of the produced bytes."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kexec_py.arch.arm import Arm, ArmOptions
from kexec_py.arch.base import LoadInputs
from kexec_py.image.arm_zimage import parse_zimage
from kexec_py.plan.devicetree import parse_dtb
from kexec_py.preflight import check_plan
from kexec_py.system.view import SystemView
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests/fixtures/systems"
SNAPSHOT = {"armmp-lpae": FIXTURES / "arm-qemu-lpae-2cpu", "armmp": FIXTURES / "arm-qemu-2cpu"}
INITRD = b"070701" + bytes(range(256)) * 40


@pytest.fixture(scope="module", params=["armmp-lpae", "armmp"])
def machine(request):
    from tests.guest.fetch import fetch_arm_kernel
    flavour = request.param
    return SystemView(SNAPSHOT[flavour]), fetch_arm_kernel(flavour)


def _plan(machine, *, crash: bool, options=ArmOptions(), initrd=INITRD, cmdline="console=ttyAMA0"):
    sys, kernel = machine
    arch, image = Arm(), parse_zimage(kernel.read_bytes(), path=str(kernel))
    inputs = LoadInputs(cmdline=cmdline, initrd=initrd, page_size=sys.page_size, options=options)
    if crash:
        plan = arch.plan_crash(image, inputs, arch.read_crash_facts(sys))
    else:
        plan = arch.plan_load(image, inputs, arch.read_load_facts(sys))
    check_plan(plan, arch)
    return plan, image, sys


def seg(plan, name):
    (s,) = [s for s in plan.segments if s.name == name]
    return s


def _kernel_reach(sys: SystemView) -> int:
    """_end - _text of the running kernel (the same zImage): from its /proc/iomem."""
    (code,), (data,) = sys.iomem.named("Kernel code"), sys.iomem.named("Kernel data")
    return data.end - code.start


@pytest.mark.parametrize("crash", [False, True])
def test_kernel_at_ram_base_plus_text_offset_and_nothing_in_its_way(machine, crash):
    plan, image, sys = _plan(machine, crash=crash)
    (ram,) = [r.range for r in sys.iomem.roots if r.name == "System RAM"]
    (code,) = sys.iomem.named("Kernel code")
    base = sys.crash_regions()[0].start if crash else ram.start
    kernel = seg(plan, "kernel")
    assert kernel.mem == base + (code.start - ram.start)          # where QEMU's boot put this kernel's text
    assert plan.entry == kernel.mem and kernel.buf[0x24:0x28] == b"\x18\x28\x6f\x01"
    # next-arches-facts.md: the decompressor's copy ends at base + TEXT_OFFSET + edata + zImage
    # size + 64 KiB malloc + stack; and the kernel itself reaches _end (bss)
    free_from = kernel.mem + max(_kernel_reach(sys), image.kernel_size + len(image.data) + 0x10000 + 0x1000)
    for name in ("initrd", "dtb"):
        assert seg(plan, name).mem >= free_from, name
    lowmem_end = base + (768 << 20)
    assert all(s.range.end <= lowmem_end for s in plan.segments if s.name in ("initrd", "dtb"))


@pytest.mark.parametrize("crash", [False, True])
def test_device_tree_says_bootargs_and_initrd(machine, crash, tmp_path):
    plan, _, _ = _plan(machine, crash=crash)
    dtb, initrd = seg(plan, "dtb"), seg(plan, "initrd")
    assert bytes(dtb.buf[:4]) == b"\xd0\x0d\xfe\xed"       # machine_kexec finds it by this magic (r2)
    assert bytes(initrd.buf[:4]) != b"\xd0\x0d\xfe\xed"
    (tmp_path / "t.dtb").write_bytes(bytes(dtb.buf))
    dtc = require_tool("dtc", "device-tree-compiler")
    dts = subprocess.run([dtc, "-I", "dtb", "-O", "dts", str(tmp_path / "t.dtb")],
                         capture_output=True, text=True, check=True).stdout
    chosen = dts[dts.index("chosen {"):]
    chosen = chosen[:chosen.index("};")]
    bootargs = re.search(r'bootargs = "([^"]*)"', chosen).group(1)
    assert bootargs == plan.cmdline and bootargs.startswith("console=ttyAMA0")
    cells = lambda prop: int("".join(f"{int(c, 16):08x}" for c in re.search(prop + r" = <([^>]*)>", chosen)
                                      .group(1).split()), 16)
    assert cells("linux,initrd-start") == initrd.mem
    assert cells("linux,initrd-end") == initrd.mem + len(INITRD)
    assert "memory@40000000" in dts                          # the running machine's tree, from /sys/firmware/fdt


def test_capture_kernel_command_line_is_kexec_tools(machine):
    """kexec-tools 2.0.25 with --image-size on the same guest (crashkernel=256M at 0x58000000)
    gave the capture kernel 'elfcorehdr=0x67f00000 mem=261120K' (next-arches-facts.md)."""
    plan, _, _ = _plan(machine, crash=True)
    assert plan.cmdline.endswith(" elfcorehdr=0x67f00000 mem=261120K")
    core = seg(plan, "elfcorehdr")
    assert core.mem == 0x67F00000 and all(s.mem < core.mem for s in plan.segments if s is not core)
    tree = parse_dtb(bytes(seg(plan, "dtb").buf))
    chosen = tree.root.child("chosen")
    acells, scells = (int.from_bytes(tree.root.props[f"#{n}-cells"], "big") for n in ("address", "size"))
    assert chosen.props["linux,usable-memory-range"] == (0x58000000).to_bytes(4 * acells, "big") + \
        (0x10000000).to_bytes(4 * scells, "big")


def test_elf_core_header_is_elf32_with_linear_addresses(machine):
    plan, _, sys = _plan(machine, crash=True)
    elf = ELFFile(io.BytesIO(bytes(seg(plan, "elfcorehdr").buf)))
    assert elf.elfclass == 32 and elf["e_machine"] == "EM_ARM" and elf["e_type"] == "ET_CORE"
    notes = [s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
    assert len(notes) == len(sys.crash_notes()) + 1             # every CPU, and vmcoreinfo
    loads = [(s["p_paddr"], s["p_vaddr"], s["p_memsz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    # RAM 0x40000000-0x9fffffff less the crash region; PAGE_OFFSET 0xc0000000 (3G/1G) at PHYS_OFFSET
    assert loads == [(0x40000000, 0xC0000000, 0x18000000), (0x68000000, 0xE8000000, 0x38000000)]
    (stext,) = [int(line.split()[0], 16) for line in (sys.path("/proc/kallsyms")).read_text().splitlines()
                if line.endswith(" _stext")]
    assert any(v <= stext < v + n for _, v, n in loads)


@pytest.mark.parametrize("reserved_end, base", [
    (0x40200000, 0x40000000),   # reserved memory below the page tables (TEXT_OFFSET - 16 KiB): RAM's start
    (0x40206000, 0x48000000),   # reaching the decompressor's page tables: the next 128 MiB
])
def test_reserved_memory_at_the_start_of_ram(machine, tmp_path, reserved_end, base):
    """-l: the decompressor takes its address rounded down to 128 MiB as the start of RAM and
    writes from 16 KiB (page tables) below base + TEXT_OFFSET; reserved memory under that
    keeps the base, reserved memory in the way moves it (booting.rst; head.S's r4)."""
    import shutil
    sys, kernel = machine
    root = tmp_path / "snap"
    shutil.copytree(sys.root, root, symlinks=True)
    iomem = (root / "proc/iomem").read_text()
    iomem = iomem.replace("40000000-9fffffff : System RAM\n",
                          f"40000000-9fffffff : System RAM\n  40000000-{reserved_end - 1:08x} : reserved\n")
    (root / "proc/iomem").write_text(iomem)
    plan, image, _ = _plan((SystemView(root), kernel), crash=False)
    assert seg(plan, "kernel").mem == base + image.text_offset
    assert all(s.mem >= reserved_end for s in plan.segments)


KEYSTONE_IOMEM = """\
09000000-09000fff : pl011@9000000
80000000-9fffffff : System RAM (boot alias)
  88000000-8fffffff : Crash kernel (boot alias)
800000000-81fffffff : System RAM
  800008000-8007fffff : Kernel code
  808000000-80fffffff : Crash kernel
"""


def test_boot_alias_crash_region_and_ram_above_4g(tmp_path):
    """A Keystone-like machine: RAM above 4 GiB, seen through a 32-bit boot alias. The segments
    go to the alias of the crash region (kexec-tools prefers it, kexec-tools-facts.md), the ELF
    core header is ELF64 (RAM above UINT32_MAX) and covers System RAM, not its alias, less the
    crash region; virtual addresses count from the start of that RAM."""
    import shutil
    from tests.guest.fetch import fetch_arm_kernel
    kernel = fetch_arm_kernel("armmp-lpae")
    root = tmp_path / "snap"
    shutil.copytree(SNAPSHOT["armmp-lpae"], root, symlinks=True)
    (root / "proc/iomem").write_text(KEYSTONE_IOMEM)
    plan, image, _ = _plan((SystemView(root), kernel), crash=True)
    alias = (0x88000000, 0x90000000)
    assert all(alias[0] <= s.mem and s.mem + s.memsz <= alias[1] for s in plan.segments)
    assert seg(plan, "kernel").mem == alias[0] + image.text_offset
    core = seg(plan, "elfcorehdr")
    assert core.mem % (2 << 20) == 0                                   # 2 MiB aligned with LPAE
    assert plan.cmdline.endswith(f" elfcorehdr={core.mem:#x} mem={(core.mem - alias[0]) >> 10}K")
    elf = ELFFile(io.BytesIO(bytes(core.buf)))
    assert elf.elfclass == 64 and elf["e_machine"] == "EM_ARM"
    loads = [(s["p_paddr"], s["p_vaddr"], s["p_memsz"]) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert loads == [(0x800000000, 0xC0000000, 0x8000000), (0x810000000, 0xD0000000, 0x10000000)]


def test_image_size_overrides_the_room(machine):
    plan, _, _ = _plan(machine, crash=False, options=ArmOptions(image_size=0x3000000))
    kernel = seg(plan, "kernel")
    assert seg(plan, "initrd").mem == kernel.mem + 0x3000000


def test_cli_dry_run_and_refusals(machine, tmp_path):
    sys, kernel = machine
    initrd = tmp_path / "initrd"
    initrd.write_bytes(INITRD)
    run = lambda *a: subprocess.run(["python3", "-m", "kexec_py", "--root", str(sys.root), "--arch", "arm",
                                     "--dry-run", *a], capture_output=True, text=True, cwd=REPO)
    out = run("-p", str(kernel), "--initrd", str(initrd), "--append", "console=ttyAMA0")
    assert out.returncode == 0, out.stderr
    assert "KEXEC_ON_CRASH" in out.stdout and "elfcorehdr=0x67f00000 mem=261120K" in out.stdout
    assert "purgatory" not in out.stdout
    out = run("-s", "-l", str(kernel))
    assert out.returncode == 253 and "kexec_file_load not available" in out.stderr
    assert run("-a", "-l", str(kernel)).returncode == 0
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fNOPE" * 100)
    out = run("-l", str(junk))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "zImage" in out.stderr
    out = run("-l", str(kernel), "--image-size", "0x3000000")
    assert out.returncode == 0 and "--image-size" in out.stdout
    out = run("-l", str(kernel), "--image-size", "-5")
    assert out.returncode != 0
