"""The x86 and placement options reach the plan: --mem-min/--mem-max, --console-serial/--serial,
--pass-memmap-cmdline, the RNG seed, --elf32-core-headers; --dtb refused where it cannot work."""

import pytest

from kexec_py.arch.base import LoadInputs
from kexec_py.arch.x86_options import X86Options
from kexec_py.arch.x86_64 import X86_64
from kexec_py.image.open import open_kernel
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.plan.ranges import Range
from kexec_py.structs import bootparam as bp
from kexec_py.system.view import SystemView
from tests.conftest import SYSTEMS
from tests.test_cli import kexec_py

ROOT = SYSTEMS / "x86_64-qemu-2cpu"


def plan(debian_kernel, *, crash=True, **kw):
    arch = X86_64()
    sys = SystemView(ROOT)
    image = open_kernel(debian_kernel, arch.formats)
    inputs = LoadInputs(cmdline="console=ttyS0", initrd=b"i" * 5000, page_size=sys.page_size, **kw)
    if crash:
        return arch.plan_crash(image, inputs, arch.read_crash_facts(sys), load_purgatory("x86_64"))
    return arch.plan_load(image, inputs, arch.read_load_facts(sys), load_purgatory("x86_64"))


def seg(p, name):
    (s,) = [s for s in p.segments if s.name == name]
    return s


def symbol(p, name):
    purg = seg(p, "purgatory")
    linked = load_purgatory("x86_64").link(purg.mem)
    off = linked.symbol_addr(name) - purg.mem
    return bytes(purg.buf[off:off + len(linked.get_symbol(name))])


def test_mem_window_bounds_placement(debian_kernel):
    free = plan(debian_kernel, crash=False)
    assert max(s.mem + s.memsz for s in free.segments) > 0x40000000
    low = plan(debian_kernel, crash=False, window=Range(0x1000000, 0x20000000))
    assert all(0x1000000 <= s.mem and s.mem + s.memsz <= 0x20000000 for s in low.segments)


def test_console_serial_configures_the_purgatory(debian_kernel):
    quiet = plan(debian_kernel)
    assert symbol(quiet, "console_serial") == b"\0"
    loud = plan(debian_kernel, options=X86Options(serial_port=0x2F8))
    assert symbol(loud, "console_serial") == b"\1" and symbol(loud, "serial_base") == (0x2F8).to_bytes(2, "little")


def test_pass_memmap_cmdline(debian_kernel):
    p = plan(debian_kernel, options=X86Options(pass_memmap=True))
    hdr = seg(p, "elfcorehdr")
    assert f"elfcorehdr={hdr.mem >> 10}K memmap=exactmap memmap=" in p.cmdline
    ram = [tok for tok in p.cmdline.split() if tok.startswith("memmap=") and "@" in tok]
    assert ram[0] == f"memmap={(0x9fc00 - 0x1000) >> 10}K@4K"          # the backed-up low RAM
    region = Range(0x2F000000, 0x47000000)
    start = int(ram[1].split("@")[1][:-1]) << 10
    assert region.contains(start)
    assert "memmap=" not in plan(debian_kernel).cmdline


def test_rng_seed_rides_in_the_setup_segment(debian_kernel):
    seed = bytes(range(32))
    p = plan(debian_kernel, rng_seed=seed)
    setup = seg(p, "setup")
    zp = bp.boot_params.parse(bytes(setup.buf[:4096]))
    off = zp.hdr.setup_data - setup.mem
    assert 4096 < off and off % 16 == 0 and off + 48 <= setup.memsz
    sd = bp.setup_data.parse(bytes(setup.buf[off:off + 16]))
    assert (sd.next, sd.type, sd.len) == (0, bp.SETUP_RNG_SEED, 32)
    assert bytes(setup.buf[off + 16:off + 48]) == seed
    assert bp.boot_params.parse(bytes(seg(plan(debian_kernel), "setup").buf[:4096])).hdr.setup_data == 0


@pytest.fixture(scope="module")
def kernel_686():
    from tests.guest.fetch import fetch
    return fetch("i386").kernel


@pytest.mark.parametrize("flag,cls", [(None, "ELF32"), ("--elf64-core-headers", "ELF64"),
                                      ("--elf32-core-headers", "ELF32")])
def test_core_header_class_on_i386(kernel_686, flag, cls):
    args = ["--arch", "i386", "-p", "-c", "--dry-run", *([flag] if flag else []), kernel_686]
    code, out, err, _ = kexec_py(*args, root=SYSTEMS / "i386-qemu-1cpu")
    assert code == 0, err
    assert f"bytes, {cls})" in out


@pytest.mark.parametrize("args,match", [
    (["-p", "-c", "--dtb", "/etc/hostname"], "x86_64 kernels do not take a device tree"),
    (["--arch", "arm64", "--dry-run", "-p", "-s", "--dtb", "/etc/hostname"],
     "cannot be passed through kexec_file_load"),
])
def test_dtb_refused_where_it_cannot_work(debian_kernel, args, match):
    code, _, err, traced = kexec_py(*args, debian_kernel)
    assert code == 1 and match in err and traced == []


def test_hotplug_leaves_room_and_the_elfcorehdr_out_of_the_digest(debian_kernel):
    import struct
    p = plan(debian_kernel, hotplug_size=0x11000 + 100)
    hdr = seg(p, "elfcorehdr")
    assert hdr.memsz == 0x12000 and p.flags & 0x4                    # KEXEC_UPDATE_ELFCOREHDR
    regions = struct.unpack("<32Q", symbol(p, "sha256_regions"))
    hashed = {regions[2 * i] for i in range(16) if regions[2 * i + 1]}
    assert hdr.mem not in hashed and seg(p, "kernel").mem in hashed
    plain = plan(debian_kernel)
    assert not plain.flags & 0x4 and seg(plain, "elfcorehdr").memsz == 0x4000


def test_hotplug_cli(debian_kernel, tmp_path):
    import json
    import shutil
    root = tmp_path / "sys"
    shutil.copytree(ROOT, root)
    code, _, err, traced = kexec_py("-p", "-c", "--hotplug", debian_kernel, root=root)
    assert code == 1 and "crash_elfcorehdr_size is missing" in err and traced == []
    (root / "sys/kernel/crash_elfcorehdr_size").write_text("69632\n")
    rec = tmp_path / "rec.jsonl"
    code, _, err, _ = kexec_py("-p", "-c", "--hotplug", debian_kernel, root=root, record=rec)
    assert code == 0, err
    (call,) = [json.loads(line) for line in rec.read_text().splitlines()]
    assert call["flags"] == 0x3E0005


def test_serial_baud_reaches_the_purgatory(debian_kernel):
    """--serial-baud sets the rate the purgatory programs the UART to (0: left as it was)."""
    from kexec_py.arch.x86_options import parse
    from tests.test_request import _values
    opts = parse(_values(console_serial=True, serial="ttyS1", serial_baud=57600))
    assert (opts.serial_port, opts.serial_baud) == (0x2F8, 57600)
    p = plan(debian_kernel, options=opts)
    assert symbol(p, "serial_baud") == (57600).to_bytes(4, "little")
    assert symbol(plan(debian_kernel, options=X86Options(serial_port=0x3F8)), "serial_baud") == bytes(4)
    assert parse(_values(serial_baud=57600)).serial_baud is None     # no console, nothing to program


def test_noefi_passes_no_efi_and_says_so(debian_kernel):
    """kexec-tools' --noefi: efi_info stays empty and the capture kernel finds ACPI by acpi_rsdp=
    (on a SeaBIOS machine as on a UEFI one, where it would otherwise be handed EFI:
    tests/arch/test_x86_efi.py)."""
    p = plan(debian_kernel, options=X86Options(noefi=True))
    setup = seg(p, "setup")
    assert bytes(setup.buf[0x1C0:0x1E0]) == bytes(32)                # boot_params.efi_info
    assert " acpi_rsdp=0x" in p.cmdline
    assert any("--noefi" in n for n in p.notes)
    assert not any("--noefi" in n or "EFI" in n for n in plan(debian_kernel).notes)


def test_the_boot_video_type_is_kept_as_with_reuse_video_type(debian_kernel):
    """kexec-tools without a framebuffer, and with --reuse-video-type, hand on the boot-time
    screen_info (orig_video_isVGA at 0x0f among it); kexec-py always does."""
    running = SystemView(ROOT).boot_params()
    setup = bytes(seg(plan(debian_kernel, crash=False), "setup").buf)
    assert setup[0x0F] == running[0x0F]
    assert setup[:2] + setup[4:0x40] == running[:2] + running[4:0x40]  # all but ext_mem_k (0x02)
