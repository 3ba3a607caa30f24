"""Fuzz targets: every parser of untrusted input, each taking bytes.

A target may return anything or raise a KexecError (a clear message for the
user); any other exception is a bug. ``scripts/fuzz`` runs them for long;
tests/test_fuzz.py runs a short smoke round in CI.
"""

from __future__ import annotations

from typing import Callable

from kexec_py.errors import KexecError


def _iomem(data: bytes):
    from kexec_py.system.iomem import parse_iomem
    return parse_iomem(data.decode("utf-8", "replace"))


def _bzimage(data: bytes):
    from kexec_py.image.bzimage import parse_bzimage
    return parse_bzimage(data, path="fuzz")


def _kernel_file(data: bytes):
    """The whole open path: decompression, probing, every x86_64 format."""
    import tempfile

    from kexec_py.arch.x86_64 import X86_64
    from kexec_py.image.open import open_kernel
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return open_kernel(f.name, X86_64().formats)


def _purgatory(data: bytes):
    from kexec_py.arch import relocs_x86_64
    from kexec_py.plan.purgatory import PurgatoryObject
    obj = PurgatoryObject.from_bytes(data, machine="EM_X86_64", relocs=relocs_x86_64.RELOCATIONS)
    return obj.link(0x100000)


def _kcore(data: bytes):
    from kexec_py.system.kcore import parse_kcore
    return parse_kcore(data)


def _vmlinux(data: bytes):
    """The ELF kernel readers: x86_64 (placed by p_paddr) and arm64 (laid out by p_vaddr)."""
    from kexec_py.image.arm64_image import parse_arm64_vmlinux
    from kexec_py.image.vmlinux import parse_vmlinux
    for parse in (parse_vmlinux, parse_arm64_vmlinux):
        try:
            parse(data, path="fuzz")
        except KexecError:
            pass


def _uki(data: bytes):
    """PE/COFF section table and the UKI's payload sections, as x86_64 reads them."""
    from kexec_py.arch.x86_64 import X86_64, _parse_uki
    uki = _parse_uki(data, path="fuzz")
    X86_64().file_inputs(uki)
    return uki


def _arm64_image(data: bytes):
    from kexec_py.image.arm64_image import parse_arm64_image
    return parse_arm64_image(data, path="fuzz")


def _zboot(data: bytes):
    from kexec_py.image.zboot import unwrap
    return unwrap(data, what="fuzz")


def _arm64_kernel_file(data: bytes):
    """The whole open path for arm64: zboot, decompression, Image and vmlinux."""
    import tempfile

    from kexec_py.arch.arm64 import Arm64
    from kexec_py.image.open import open_kernel
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return open_kernel(f.name, Arm64().formats)


def _decompress(data: bytes):
    """Every whole-file wrapper, whatever the bytes claim to be."""
    from kexec_py.image.decompress import decompress, sniff
    kinds = {sniff(data[:16]), "gzip", "xz", "lzma", "bzip2", "zstd"} - {None, "zboot"}
    for kind in sorted(kinds):
        try:
            decompress(data, kind, what="fuzz")
        except KexecError:
            pass


def _fdt(data: bytes):
    """Read a device tree, give it a kexec /chosen, write it, read it back."""
    from kexec_py.plan.devicetree import ChosenSpec, build_dtb, kexec_chosen, parse_dtb
    from kexec_py.plan.ranges import Range
    tree = parse_dtb(data, what="fuzz")
    spec = ChosenSpec(cmdline="console=ttyAMA0 irqpoll", initrd=Range(0x48000000, 0x48100000),
                      elfcorehdr=Range(0x90000000, 0x90010000), usable=(Range(0x80000000, 0xA0000000),))
    out = build_dtb(kexec_chosen(tree, spec))
    parse_dtb(out, what="fuzz (rebuilt)")
    return out


def _cmdline(data: bytes):
    """Composing the new kernel's command line from --reuse-cmdline and --append, and
    the boot protocol's length check."""
    from types import SimpleNamespace

    from kexec_py.arch.x86 import check_cmdline
    from kexec_py.plan.cmdline import compose_cmdline
    text = data.decode("utf-8", "replace")
    reuse, _, append = text.partition("\0")
    for crash in (False, True):
        line = compose_cmdline(append=append or None, reuse=reuse, crash=crash)

        def dropped(words):
            return [w for w in words if w == "BOOT_IMAGE" or w.startswith("BOOT_IMAGE=")
                    or crash and (w == "crashkernel" or w.startswith("crashkernel="))]
        if len(dropped(line.split())) != len(dropped(append.split())):
            raise AssertionError(f"BOOT_IMAGE= or crashkernel= kept from the running command line: {line!r}")
        check_cmdline(SimpleNamespace(cmdline_size=2047, path="fuzz"), line)


def _snapshot(data: bytes):
    """The readers of /proc and /sys: the parts of ``data`` (split at NUL bytes) become
    /proc/iomem, the CPU list, crash notes, vmcoreinfo, a firmware memmap entry and
    /proc/kcore of a snapshot, which the x86_64 crash and load fact readers then read."""
    import tempfile
    from pathlib import Path

    from kexec_py.arch.x86_64 import X86_64
    from kexec_py.system.view import SystemView
    parts = data.split(b"\0", len(SNAPSHOT_FILES) - 1)
    with tempfile.TemporaryDirectory() as root:
        for rel, part in zip(SNAPSHOT_FILES, parts):
            path = Path(root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(part)
        view = SystemView(root)
        for read in (X86_64().read_crash_facts, X86_64().read_load_facts, lambda v: v.kexec_crash_size(),
                     lambda v: v.efi_systab(), lambda v: v.page_size):
            try:
                read(view)
            except KexecError:
                pass


def _crash_plan(data: bytes):
    """A whole x86_64 crash plan (facts, placement, ELF core header, zero page, purgatory
    link, check_plan) for a small ELF kernel, on the captured x86_64-qemu-2cpu
    snapshot with ``data`` as its /proc/iomem: a strange memory map must give a
    clear refusal or a plan that check_plan accepts, nothing else."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from kexec_py.arch.base import LoadInputs
    from kexec_py.arch.x86_64 import X86_64
    from kexec_py.image.vmlinux import parse_vmlinux
    from kexec_py.plan.purgatory import load_purgatory
    from kexec_py.preflight import check_plan
    from kexec_py.system.view import SystemView
    global _PLAN_ROOT
    if _PLAN_ROOT is None:
        fixture = Path(__file__).resolve().parents[2] / "tests/fixtures/systems/x86_64-qemu-2cpu"
        if not fixture.is_dir():
            raise RuntimeError(f"the crash-plan target needs the source tree's {fixture}")
        _PLAN_ROOT = Path(tempfile.mkdtemp(prefix="kexec-py-fuzz-"))
        atexit.register(shutil.rmtree, _PLAN_ROOT, True)
        shutil.copytree(fixture, _PLAN_ROOT, dirs_exist_ok=True)
    (_PLAN_ROOT / "proc/iomem").write_bytes(data)
    arch = X86_64()
    image = parse_vmlinux(_tiny_vmlinux(), path="tiny-vmlinux")
    view = SystemView(_PLAN_ROOT)
    facts = arch.read_crash_facts(view)
    plan = arch.plan_crash(image, LoadInputs(cmdline="console=ttyS0", initrd=b"\x07" * 5000,
                                             page_size=view.page_size), facts, load_purgatory("x86_64"))
    check_plan(plan, arch)
    return plan


_PLAN_ROOT = None


def _tiny_vmlinux() -> bytes:
    """An x86_64 ELF vmlinux in miniature: one PT_LOAD of 4 KiB (4 MiB in memory) at
    16 MiB, entered at its start, with a "Linux" note."""
    import struct
    note = struct.pack("<III", 6, 4, 0) + b"Linux\0\0\0" + bytes(4)
    off = 64 + 2 * 56
    phdrs = (struct.pack("<IIQQQQQQ", 4, 4, off, 0, 0, len(note), len(note), 4)
             + struct.pack("<IIQQQQQQ", 1, 7, off + len(note), 0xFFFFFFFF81000000, 0x1000000, 4096, 4 << 20, 4096))
    header = (b"\x7fELF\x02\x01\x01" + bytes(9)
              + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, 64, 0, 0, 64, 56, 2, 64, 0, 0))
    return header + phdrs + note + b"\x90" * 4096


SNAPSHOT_FILES = ("proc/iomem", "sys/devices/system/cpu/possible", "sys/devices/system/cpu/cpu0/crash_notes",
                  "sys/devices/system/cpu/cpu0/crash_notes_size", "sys/kernel/vmcoreinfo",
                  "sys/firmware/memmap/0/start", "sys/firmware/memmap/0/end", "sys/firmware/memmap/0/type",
                  "sys/kernel/kexec_crash_size", "sys/firmware/efi/systab", "proc/kallsyms", "proc/kcore")


TARGETS: dict[str, Callable[[bytes], object]] = {
    "iomem": _iomem,
    "bzimage": _bzimage,
    "kernel-file": _kernel_file,
    "purgatory": _purgatory,
    "kcore": _kcore,
    "vmlinux": _vmlinux,
    "uki": _uki,
    "arm64-image": _arm64_image,
    "zboot": _zboot,
    "arm64-kernel-file": _arm64_kernel_file,
    "decompress": _decompress,
    "fdt": _fdt,
    "cmdline": _cmdline,
    "snapshot": _snapshot,
    "crash-plan": _crash_plan,
}


def run_one(name: str, data: bytes) -> None:
    """Run target ``name`` on ``data``; only non-KexecError exceptions escape."""
    try:
        TARGETS[name](data)
    except KexecError:
        pass
