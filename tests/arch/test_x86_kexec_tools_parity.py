"""Unit tests for x86 details the differential test against kexec-tools 2.0.25
(tests/test_differential_x86_64.py) found and kexec-py now does the same way."""

from __future__ import annotations

from kexec_py.record import replace

from kexec_py.arch import x86
from kexec_py.arch.x86_options import X86Options
from kexec_py.arch.base import LoadInputs
from kexec_py.arch.zeropage import ZeroPageSpec, build_zero_page
from kexec_py.plan.ranges import MiB, Range
from kexec_py.structs import bootparam as bp

HEADER = bytes(0x7F)


def zero_page(e820) -> bp.boot_params:
    raw = build_zero_page(ZeroPageSpec(setup_header=HEADER, cmdline_addr=0x10000, initrd=None,
                                       e820=tuple(e820), running=None))
    return bp.boot_params.parse(raw)


def ext_mem_k(zp) -> int:
    return int.from_bytes(zp.screen_info[2:4], "little")


def test_mem_k_fields_count_from_the_last_byte_and_ext_mem_k_stops_at_63_mib():
    # QEMU -m 1536: RAM 1 MiB .. 0x5ffe0000 (a KiB-aligned end)
    zp = zero_page([(Range(0x1000, 0x9FC00), "ram"), (Range(MiB, 0x5FFE0000), "ram")])
    assert zp.alt_mem_k == (0x5FFDFFFF >> 10) - 1024 == 1571711     # as kexec-tools and the kernel's loader
    assert ext_mem_k(zp) == 0xFC00                                  # not 0xFFFF


def test_mem_k_fields_small_and_absent():
    zp = zero_page([(Range(0, 0x9F000), "ram"), (Range(MiB, 16 * MiB), "ram")])
    assert zp.alt_mem_k == ext_mem_k(zp) == 15 * 1024 - 1
    zp = zero_page([(Range(0x1000, 0x9FC00), "ram"), (Range(0x2F000000, 0x47000000), "ram")])
    assert zp.alt_mem_k == ext_mem_k(zp) == 0                       # a crash e820: no RAM at 1 MiB


def _facts(boot_params: bytes | None, efi_rsdp: int) -> x86.CrashFacts:
    return x86.CrashFacts(crash_regions=(Range(0x2F000000, 0x47000000),), ram=(), other=(), excluded=(),
                          notes=(), kernel_text=None, page_offset=None, boot_params=boot_params,
                          acpi_rsdp=efi_rsdp)


def _cc() -> x86.CrashCore:
    return x86.CrashCore(backup_src=Range(0x1000, 0x9FC00), backup=Range(0x46F61000, 0x47000000), core=b"",
                         elfcorehdr=Range(0x46F5D000, 0x46F61000))


def test_crash_cmdline_names_the_acpi_rsdp_before_elfcorehdr():
    zp = bytearray(4096)
    zp[0x70:0x78] = (0xF59D0).to_bytes(8, "little")
    rsdp = x86.running_acpi_rsdp(_facts(bytes(zp), efi_rsdp=0x7FBFA014))
    assert rsdp == 0xF59D0                                          # the running zero page wins
    line = x86.crash_cmdline(LoadInputs(cmdline="console=ttyS0", initrd=None, page_size=4096), _cc(), [], acpi_rsdp=rsdp)
    assert line == "console=ttyS0 acpi_rsdp=0xf59d0 elfcorehdr=1162612K"


def test_acpi_rsdp_from_the_efi_system_table_or_none():
    assert x86.running_acpi_rsdp(_facts(bytes(4096), efi_rsdp=0x7FBFA014)) == 0x7FBFA014
    assert x86.running_acpi_rsdp(_facts(None, efi_rsdp=0)) == 0
    inputs = LoadInputs(cmdline="", initrd=None, page_size=4096)
    assert x86.crash_cmdline(inputs, _cc(), [], acpi_rsdp=0) == "elfcorehdr=1162612K"
    with_memmap = x86.crash_cmdline(replace(inputs, options=X86Options(pass_memmap=True)), _cc(), [(Range(0x1000, 0x9FC00), "ram")],
                                    acpi_rsdp=0xF59D0)
    assert with_memmap == "acpi_rsdp=0xf59d0 elfcorehdr=1162612K memmap=exactmap memmap=635K@4K"
