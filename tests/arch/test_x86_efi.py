"""kexec_load on a UEFI x86_64 machine hands the new kernel its EFI (issue 18): efi_info in
the zero page, a SETUP_EFI setup_data and the runtime map, for -l and -p, on the snapshots
of OVMF-booted guests.

Expected values come from the fixture's own files (its sysfs EFI files, its boot_params) and
the boot protocol documents' offsets (Documentation/arch/x86/zero-page.rst: efi_info at
0x1c0, setup_data at 0x250 of the setup header; boot.rst: struct setup_data and SETUP_EFI = 4;
the kernel's struct efi_setup_data; the UEFI memory descriptor), read with ``struct`` here,
not with kexec_py's construct definitions.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from kexec_py.arch.base import LoadInputs
from kexec_py.arch.i386 import I386
from kexec_py.arch.x86_options import X86Options
from kexec_py.arch.x86_64 import X86_64
from kexec_py.image.open import open_kernel
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.system.view import SystemView
from tests.conftest import SYSTEMS

OVMF = ["x86_64-ovmf-2cpu", "x86_64-ovmf-6g-high"]
EFI_INFO = 0x1C0                 # zero-page.rst
SETUP_DATA_PTR = 0x250           # boot.rst: the setup header's setup_data
SETUP_EFI = 4
EFI_INFO_FMT = "<4sIIIIIII"      # signature, systab, memdesc_size, memdesc_version, memmap, memmap_size,
                                 # systab_hi, memmap_hi
DESC_FMT = "<IIQQQQ"             # type, pad, phys_addr, virt_addr, num_pages, attribute


def plan(kernel, fixture: str | Path, *, crash: bool, options: X86Options | None = None, arch=None):
    arch = arch or X86_64()
    view = SystemView(fixture if isinstance(fixture, Path) else SYSTEMS / fixture)
    inputs = LoadInputs(cmdline="console=ttyS0", initrd=b"i" * 5000, page_size=view.page_size, options=options,
                        rng_seed=bytes(range(32)))
    image = open_kernel(kernel, arch.formats)
    purgatory = load_purgatory(arch.name)
    if crash:
        return arch.plan_crash(image, inputs, arch.read_crash_facts(view), purgatory)
    return arch.plan_load(image, inputs, arch.read_load_facts(view), purgatory)


def setup_segment(p):
    (s,) = [s for s in p.segments if s.name == "setup"]
    return s


def read(p, addr: int, size: int) -> bytes:
    """``size`` bytes at physical ``addr`` from the plan's segments (one segment must hold them)."""
    for s in p.segments:
        if s.mem <= addr and addr + size <= s.mem + s.memsz:
            data = bytes(s.buf[addr - s.mem:addr - s.mem + size])
            return data + bytes(size - len(data))
    raise AssertionError(f"{addr:#x}+{size:#x} is in no segment")


def setup_data_chain(p) -> list[tuple[int, int, bytes]]:
    """(address, type, payload) of each setup_data, from the zero page's head."""
    zp = bytes(setup_segment(p).buf[:4096])
    out, addr = [], struct.unpack_from("<Q", zp, SETUP_DATA_PTR)[0]
    while addr:
        nxt, typ, length = struct.unpack("<QII", read(p, addr, 16))
        out.append((addr, typ, read(p, addr + 16, length)))
        addr = nxt
    return out


def fixture_runtime_map(root: Path) -> list[tuple]:
    top = root / "sys/firmware/efi/runtime-map"
    rows = []
    for d in sorted(top.iterdir(), key=lambda d: int(d.name)):
        v = {k: int((d / k).read_text(), 16) for k in ("type", "phys_addr", "virt_addr", "num_pages", "attribute")}
        rows.append((v["type"], 0, v["phys_addr"], v["virt_addr"], v["num_pages"], v["attribute"]))
    return rows


def hex_file(root: Path, name: str) -> int:
    return int((root / "sys/firmware/efi" / name).read_text(), 16)


@pytest.mark.parametrize("crash", [True, False], ids=["p", "l"])
@pytest.mark.parametrize("fixture", OVMF)
def test_efi_is_handed_on(debian_kernel, fixture, crash):
    root = SYSTEMS / fixture
    p = plan(debian_kernel, fixture, crash=crash)
    zp = bytes(setup_segment(p).buf[:4096])
    running = (root / "sys/kernel/boot_params/data").read_bytes()
    sig, systab, desc_size, version, memmap, memmap_size, systab_hi, memmap_hi = struct.unpack_from(
        EFI_INFO_FMT, zp, EFI_INFO)
    r_sig, r_systab, _, r_version, _, r_size, r_systab_hi, _ = struct.unpack_from(EFI_INFO_FMT, running, EFI_INFO)
    assert r_sig == b"EL64" and r_size > 0 and r_version == 1         # the guest booted through 64-bit UEFI
    # the loader signature, the system table and the descriptor version are the running kernel's
    assert (sig, systab, systab_hi, version) == (r_sig, r_systab, r_systab_hi, r_version)
    # the memory map is the runtime map of /sys/firmware/efi/runtime-map, 40-byte descriptors
    rmap = fixture_runtime_map(root)
    assert desc_size == 40 and memmap_size == 40 * len(rmap) and rmap
    at = memmap | memmap_hi << 32
    got = [struct.unpack_from(DESC_FMT, read(p, at, memmap_size), 40 * i) for i in range(len(rmap))]
    assert got == rmap
    # SETUP_EFI: fw_vendor, runtime, config_table and the systab's SMBIOS=
    chain = setup_data_chain(p)
    assert [t for _, t, _ in chain] == [9, SETUP_EFI]                 # as kexec-tools chains them
    (payload,) = [d for _, t, d in chain if t == SETUP_EFI]
    smbios = [int(v, 16) for k, _, v in (line.partition("=") for line in
              (root / "sys/firmware/efi/systab").read_text().splitlines()) if k == "SMBIOS"]
    assert len(payload) == 0x60
    assert struct.unpack_from("<QQQQ", payload) == (hex_file(root, "fw_vendor"), hex_file(root, "runtime"),
                                                    hex_file(root, "config_table"), smbios[0])
    assert payload[32:] == bytes(64)                                 # reserved[8]
    # all of it inside the setup segment (which the new kernel's e820 lists as RAM: it reserves
    # setup_data and the EFI memory map itself), within the crash region for -p
    s = setup_segment(p)
    assert all(s.mem <= a < s.mem + s.memsz for a, _, _ in chain) and s.mem <= at < s.mem + s.memsz
    assert any("EFI passed" in n for n in p.notes)
    if crash:
        # the capture kernel finds ACPI through the EFI system table (and acpi_rsdp_addr): no acpi_rsdp=
        assert "acpi_rsdp=" not in p.cmdline
        assert any(r.start <= at < r.end for r in p.allowed)


def test_the_6g_high_map_lies_above_4g_and_efi_info_says_so(debian_kernel):
    p = plan(debian_kernel, "x86_64-ovmf-6g-high", crash=True)
    zp = bytes(setup_segment(p).buf[:4096])
    memmap, memmap_hi = struct.unpack_from("<I", zp, EFI_INFO + 0x10)[0], struct.unpack_from("<I", zp, EFI_INFO + 0x1C)[0]
    assert memmap_hi >= 1 and setup_segment(p).mem >> 32 == memmap_hi


@pytest.mark.parametrize("crash", [True, False], ids=["p", "l"])
def test_noefi_hands_on_none_and_the_capture_kernel_gets_acpi_rsdp(debian_kernel, crash):
    root = SYSTEMS / "x86_64-ovmf-2cpu"
    p = plan(debian_kernel, root, crash=crash, options=X86Options(noefi=True))
    zp = bytes(setup_segment(p).buf[:4096])
    assert zp[EFI_INFO:EFI_INFO + 32] == bytes(32)
    assert SETUP_EFI not in [t for _, t, _ in setup_data_chain(p)]
    assert any("--noefi" in n for n in p.notes)
    acpi20 = [line.split("=")[1] for line in (root / "sys/firmware/efi/systab").read_text().split() if
              line.startswith("ACPI20=")][0]
    assert struct.unpack_from("<Q", zp, 0x70)[0] == int(acpi20, 16)     # acpi_rsdp_addr, either way
    if crash:
        assert f" acpi_rsdp={int(acpi20, 16):#x} " in f" {p.cmdline} "


def test_a_kernel_without_xlf_efi_kexec_gets_no_efi(debian_kernel, tmp_path):
    data = bytearray(debian_kernel.read_bytes())
    flags = struct.unpack_from("<H", data, 0x236)[0]
    assert flags & 0x10
    struct.pack_into("<H", data, 0x236, flags & ~0x10)
    kernel = tmp_path / "vmlinuz-no-efi-kexec"
    kernel.write_bytes(bytes(data))
    p = plan(kernel, "x86_64-ovmf-2cpu", crash=True)
    assert bytes(setup_segment(p).buf[EFI_INFO:EFI_INFO + 32]) == bytes(32)
    assert "acpi_rsdp=0x" in p.cmdline
    assert any("XLF_EFI_KEXEC" in n for n in p.notes)


def _edited_fixture(tmp_path, edit) -> Path:
    root = tmp_path / "sys"
    shutil.copytree(SYSTEMS / "x86_64-ovmf-2cpu", root)
    edit(root)
    return root


def test_no_runtime_map_means_no_efi_and_acpi_rsdp(debian_kernel, tmp_path):
    """efi=noruntime, or a kernel without CONFIG_EFI_RUNTIME_MAP: nothing to map, so no EFI
    (as kexec-tools), and the capture kernel gets acpi_rsdp=."""
    root = _edited_fixture(tmp_path, lambda r: shutil.rmtree(r / "sys/firmware/efi/runtime-map"))
    p = plan(debian_kernel, root, crash=True)
    assert bytes(setup_segment(p).buf[EFI_INFO:EFI_INFO + 32]) == bytes(32)
    assert "acpi_rsdp=0x" in p.cmdline
    assert any("runtime-map" in n for n in p.notes)


def test_an_unknown_descriptor_version_means_no_efi(debian_kernel, tmp_path):
    def edit(r):
        path = r / "sys/kernel/boot_params/data"
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, EFI_INFO + 0xC, 2)
        path.write_bytes(bytes(data))
    p = plan(debian_kernel, _edited_fixture(tmp_path, edit), crash=False)
    assert bytes(setup_segment(p).buf[EFI_INFO:EFI_INFO + 32]) == bytes(32)
    assert any("version 2" in n for n in p.notes)


def test_without_the_runtime_file_runtime_is_zero(debian_kernel, tmp_path):
    """The second field is unused by kernels since 5.7; kexec-py does not give up without it."""
    root = _edited_fixture(tmp_path, lambda r: (r / "sys/firmware/efi/runtime").unlink())
    (payload,) = [d for _, t, d in setup_data_chain(plan(debian_kernel, root, crash=False)) if t == SETUP_EFI]
    assert struct.unpack_from("<QQ", payload) == (hex_file(root, "fw_vendor"), 0)


def test_a_seabios_machine_gets_no_efi_and_no_note(debian_kernel):
    p = plan(debian_kernel, "x86_64-qemu-2cpu", crash=True)
    assert bytes(setup_segment(p).buf[EFI_INFO:EFI_INFO + 32]) == bytes(32)
    assert [t for _, t, _ in setup_data_chain(p)] == [9]
    assert not any("EFI" in n for n in p.notes)


def test_i386_kernels_take_no_efi_from_kexec():
    """Debian's 686-pae kernel does not set XLF_EFI_KEXEC (the kernel's kexec EFI support is
    x86_64's), so an i386 plan on a UEFI machine hands on none and says why."""
    from tests.guest.fetch import fetch
    kernel = fetch("i386").kernel
    assert not struct.unpack_from("<H", kernel.read_bytes(), 0x236)[0] & 0x10
    p = plan(kernel, "x86_64-ovmf-2cpu", crash=False, arch=I386())
    assert bytes(setup_segment(p).buf[EFI_INFO:EFI_INFO + 32]) == bytes(32)
    assert any("XLF_EFI_KEXEC" in n for n in p.notes)
