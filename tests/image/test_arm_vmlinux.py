"""32-bit arm vmlinux (ELF, EM_ARM) files: detected by content, their PT_LOADs placed at
the RAM base + TEXT_OFFSET, entered at the physical entry. The vmlinux is rebuilt around the
kernel inside Debian's armmp zImage (tests/image/arm_kernels.py); expected values come from
pyelftools' reading of it and from the armmp snapshot's /proc/iomem, where QEMU's boot put
the very same kernel ("Kernel code" starts at _text, "Kernel data" ends at _end)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys as python
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kexec_py.arch.arm import Arm, ArmOptions
from kexec_py.arch.base import LoadInputs
from kexec_py.errors import UnsupportedImage
from kexec_py.image.arm_vmlinux import parse_arm_vmlinux
from kexec_py.preflight import check_plan
from kexec_py.system.view import SystemView
from tests.image import arm_kernels as ak

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "tests/fixtures/systems/arm-qemu-2cpu"      # the armmp guest
INITRD = b"070701" + bytes(5000)


@pytest.fixture(scope="module")
def vmlinux() -> tuple[Path, Path]:
    from tests.guest.fetch import fetch_arm_kernel
    return ak.debian_vmlinux(fetch_arm_kernel("armmp"))


@pytest.fixture(scope="module")
def elf(vmlinux):
    data = vmlinux[0].read_bytes()
    f = ELFFile(io.BytesIO(data))
    (load,) = [s for s in f.iter_segments() if s["p_type"] == "PT_LOAD"]
    return data, f, load


def test_the_rebuilt_vmlinux_is_the_running_kernel(elf):
    """Its PT_LOAD spans _text to _end of the kernel the snapshot ran (the same Debian build)."""
    _, f, load = elf
    sys = SystemView(SNAPSHOT)
    (ram,) = [r.range for r in sys.iomem.roots if r.name == "System RAM"]
    (code,), (data,) = sys.iomem.named("Kernel code"), sys.iomem.named("Kernel data")
    assert f.elfclass == 32 and f["e_machine"] == "EM_ARM" and f["e_type"] == "ET_EXEC"
    assert load["p_vaddr"] - 0xC0000000 == code.start - ram.start            # TEXT_OFFSET 0x208000
    assert load["p_memsz"] == data.end - code.start                          # _end - _text


def _plan(kernel: Path, *, crash: bool, options=ArmOptions()):
    from kexec_py.image.open import open_kernel
    arch, sys = Arm(), SystemView(SNAPSHOT)
    image = open_kernel(str(kernel), arch.formats)
    inputs = LoadInputs(cmdline="console=ttyAMA0", initrd=INITRD, page_size=4096, options=options)
    plan = (arch.plan_crash(image, inputs, arch.read_crash_facts(sys)) if crash
            else arch.plan_load(image, inputs, arch.read_load_facts(sys)))
    check_plan(plan, arch)
    return plan, sys


@pytest.mark.parametrize("crash", [False, True])
@pytest.mark.parametrize("packed", [False, True], ids=["vmlinux", "vmlinux.gz"])
def test_pt_load_at_ram_base_plus_text_offset(vmlinux, elf, crash, packed):
    data, f, load = elf
    plan, sys = _plan(vmlinux[packed], crash=crash)
    (ram,) = [r.range for r in sys.iomem.roots if r.name == "System RAM"]
    base = sys.crash_regions()[0].start if crash else ram.start
    (kernel,) = [s for s in plan.segments if s.name.startswith("kernel")]
    phys = base + (load["p_vaddr"] - 0xC0000000)
    assert kernel.mem == phys and bytes(kernel.buf) == load.data() and kernel.memsz >= load["p_memsz"]
    assert plan.entry == phys + (f["e_entry"] - load["p_vaddr"])
    # nothing else inside the kernel's memory (bss included) or its page tables below it
    for s in plan.segments:
        if s is not kernel and s.name != "elfcorehdr":
            assert s.mem >= phys + load["p_memsz"], s.name


def test_atags_below_the_vmlinux_entry(vmlinux, tmp_path):
    plan, _ = _plan(vmlinux[0], crash=False, options=ArmOptions(atags=True))
    (atags,) = [s for s in plan.segments if s.name == "atags"]
    assert atags.mem == plan.entry - 0x8000 + 0x1000


def test_two_pt_loads_keep_their_distance(elf, tmp_path):
    """A vmlinux whose data is a second PT_LOAD 1 MiB after the first: both at the same
    distance from _text in memory as in the link."""
    data, _, load = elf
    image = load.data()
    split = 0x800000
    phdr = struct.pack("<8I", 1, 0x10000, 0xC0208000, 0xC0208000, split, split, 5, 0x10000)
    phdr2 = struct.pack("<8I", 1, 0x10000 + split, 0xC0208000 + split + 0x100000, 0xC0208000 + split + 0x100000,
                        len(image) - split, len(image) - split + 0x1000, 6, 0x10000)
    ehdr = bytearray(data[:52])
    struct.pack_into("<H", ehdr, 44, 2)                                      # e_phnum
    two = bytes(ehdr) + phdr + phdr2
    two += bytes(0x10000 - len(two)) + image
    path = tmp_path / "vmlinux2"
    path.write_bytes(two)
    plan, _ = _plan(path, crash=False)
    kernels = sorted((s for s in plan.segments if s.name.startswith("kernel")), key=lambda s: s.mem)
    assert [(s.mem, bytes(s.buf)) for s in kernels] == [(0x40208000, image[:split]),
                                                         (0x40208000 + split + 0x100000, image[split:])]


def test_an_elf_for_another_machine_is_refused(elf, tmp_path):
    data, _, _ = elf
    other = bytearray(data[:0x20000])
    struct.pack_into("<H", other, 18, 183)                                   # EM_AARCH64
    with pytest.raises(UnsupportedImage, match="not 32-bit arm"):
        parse_arm_vmlinux(bytes(other), path="x")


def test_an_elf_not_linked_at_a_kernel_address_is_refused(elf):
    data, _, _ = elf
    low = bytearray(data[:0x20000])
    struct.pack_into("<II", low, 52 + 8, 0x8000, 0x8000)                     # a user program's link address
    struct.pack_into("<II", low, 52 + 16, 0x1000, 0x1000)                    # p_filesz, p_memsz
    struct.pack_into("<I", low, 24, 0x8000)                                  # e_entry
    with pytest.raises(UnsupportedImage, match="PAGE_OFFSET"):
        parse_arm_vmlinux(bytes(low), path="x")


def test_cli_dry_run_names_the_vmlinux(vmlinux):
    run = subprocess.run([python.executable, "-m", "kexec_py", "--arch", "arm", "--root", str(SNAPSHOT),
                          "--dry-run", "-l", "-c", str(vmlinux[0])], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "entry:   0x40208000" in run.stdout and "its PT_LOADs" in run.stdout


