"""x86_64 plans for ELF vmlinux files and UKIs, on snapshot fixtures, checked by
reading the produced bytes back; and the CLI's syscall choice for them."""

import hashlib
import re
import struct

import pytest

from kexec_py.arch.base import LoadInputs
from kexec_py.arch.x86_options import X86Options
from kexec_py.arch.x86_64 import ENTRY64_REGS, X86_64
from kexec_py.errors import PlacementError, UsageError
from kexec_py.image.open import open_kernel
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.preflight import check_plan
from kexec_py.structs import bootparam as bp
from kexec_py.system.view import SystemView
from tests.conftest import system_dirs
from tests.image import kernels
from tests.test_cli import kexec_py
from tests.test_cli import records as all_records

INITRD = bytes(range(256)) * 100
QEMU = [p for p in system_dirs("x86_64") if p.name == "x86_64-qemu-2cpu"][0]
MiB = 1 << 20


@pytest.fixture(scope="module")
def vmlinux_files(debian_kernel):
    return kernels.debian_vmlinux(debian_kernel)


@pytest.fixture(scope="module")
def vmlinux(vmlinux_files):
    return open_kernel(vmlinux_files[0], X86_64().formats)


def records(path):
    """The kexec calls recorded (not sync / ifdown / reboot)."""
    return [r for r in all_records(path) if r["call"].startswith("kexec_")]


def seg(plan, name):
    (s,) = [s for s in plan.segments if s.name == name]
    return s


def kernel_segs(plan):
    return sorted((s for s in plan.segments if s.name.startswith("kernel")), key=lambda s: s.mem)


def purgatory_regs(plan):
    purg = seg(plan, "purgatory")
    linked = load_purgatory("x86_64").link(purg.mem)
    start = linked.symbol_addr("entry64_regs") - purg.mem
    return dict(zip(ENTRY64_REGS, struct.unpack("<17Q", bytes(purg.buf[start:start + 17 * 8]))))


def crash_plan(image, cmdline="console=ttyS0", initrd=INITRD, **kw):
    arch = X86_64()
    view = SystemView(QEMU)
    facts = arch.read_crash_facts(view)
    return arch.plan_crash(image, LoadInputs(cmdline=cmdline, initrd=initrd, page_size=view.page_size, **kw), facts,
                           load_purgatory("x86_64")), facts


def load_plan(image, cmdline="console=ttyS0", initrd=INITRD, **kw):
    arch = X86_64()
    view = SystemView(QEMU)
    return arch.plan_load(image, LoadInputs(cmdline=cmdline, initrd=initrd, page_size=view.page_size, **kw),
                          arch.read_load_facts(view), load_purgatory("x86_64"))


def test_vmlinux_crash_plan_moves_the_kernel_into_the_crash_region(vmlinux):
    p, facts = crash_plan(vmlinux)
    check_plan(p, X86_64())
    region = facts.crash_regions[-1]
    assert all(region.contains(s.range) for s in p.segments)
    ks = kernel_segs(p)
    delta = ks[0].mem - vmlinux.loads[0].paddr
    assert delta % (2 * MiB) == 0 and delta != 0
    for s, load in zip(ks, vmlinux.loads):                        # each PT_LOAD, moved as one block
        assert s.mem == load.paddr + delta and s.memsz >= load.memsz
        assert hashlib.sha256(bytes(s.buf)).digest() == hashlib.sha256(vmlinux.payload(load)).digest()
    regs = purgatory_regs(p)
    assert regs["rip"] == vmlinux.entry + delta                 # startup_64, moved
    assert regs["rsi"] == seg(p, "setup").mem
    assert {"backup", "elfcorehdr", "setup", "purgatory", "initrd"} <= {s.name for s in p.segments}
    assert re.match(r"console=ttyS0 (acpi_rsdp=0x[0-9a-f]+ )?elfcorehdr=", p.cmdline)
    assert any("moved by" in n for n in p.notes)


def test_vmlinux_zero_page(vmlinux):
    p, _ = crash_plan(vmlinux)
    setup = seg(p, "setup")
    zp = bp.boot_params.parse(bytes(setup.buf[:4096]))
    assert zp.hdr.header == b"HdrS" and zp.hdr.version >= 0x0206 and zp.hdr.boot_flag == 0xAA55
    assert zp.hdr.type_of_loader == 0xD0 and zp.sentinel == 0
    assert zp.hdr.cmdline_size == 2047
    cmd = zp.hdr.cmd_line_ptr | zp.ext_cmd_line_ptr << 32
    assert bytes(setup.buf[cmd - setup.mem:cmd - setup.mem + len(p.cmdline) + 1]) == p.cmdline.encode() + b"\0"
    initrd = seg(p, "initrd")
    assert (zp.hdr.ramdisk_image | zp.ext_ramdisk_image << 32, zp.hdr.ramdisk_size) == (initrd.mem, len(INITRD))
    e820 = [(e.addr, e.addr + e.size, e.type) for e in zp.e820_table[:zp.e820_entries]]
    for k in kernel_segs(p):                                       # the kernel lies in RAM the capture kernel sees
        assert any(t == 1 and a <= k.mem and k.mem + k.memsz <= b for a, b, t in e820)


def test_vmlinux_load_plan_at_its_link_address(vmlinux):
    p = load_plan(vmlinux)
    check_plan(p, X86_64())
    ks = kernel_segs(p)
    assert [s.mem for s in ks] == [load.paddr for load in vmlinux.loads]
    assert purgatory_regs(p)["rip"] == 0x1000000
    assert p.flags == 0x3E0000 and p.cmdline == "console=ttyS0"


def test_vmlinux_gz_plans_like_vmlinux(vmlinux_files, vmlinux):
    gz = open_kernel(vmlinux_files[1], X86_64().formats)
    assert [(s.name, s.mem, s.memsz) for s in load_plan(gz).segments] == \
           [(s.name, s.mem, s.memsz) for s in load_plan(vmlinux).segments]


def test_args_none(vmlinux):
    p = load_plan(vmlinux, initrd=None, options=X86Options(args="none"))
    check_plan(p, X86_64())
    assert p.entry == vmlinux.entry and {s.name for s in p.segments} == {"kernel", "kernel.1", "kernel.2",
                                                                          "kernel.3"}
    with pytest.raises(UsageError, match="cannot take an initrd"):
        load_plan(vmlinux, options=X86Options(args="none"))
    with pytest.raises(PlacementError, match="outside the crash region"):
        crash_plan(vmlinux, initrd=None, options=X86Options(args="none"))
    with pytest.raises(UsageError, match="not supported"):
        load_plan(vmlinux, options=X86Options(args="elf"))


def test_non_linux_elf_needs_an_argument_style(vmlinux):
    from dataclasses import replace
    bare = replace(vmlinux, is_linux=False)
    with pytest.raises(UsageError, match="not a Linux kernel.*--args-none"):
        load_plan(bare)
    check_plan(load_plan(bare, options=X86Options(args="linux")), X86_64())


def _write_uki(tmp_path, debian_kernel, cmdline=b"console=ttyS0 from-uki", initrd=b"EMBEDDED" * 512):
    sections = [(".osrel", b"ID=test\n"), (".linux", debian_kernel.read_bytes())]
    if cmdline is not None:
        sections.append((".cmdline", cmdline))
    if initrd is not None:
        sections.append((".initrd", initrd))
    f = tmp_path / "test.efi"
    f.write_bytes(kernels.build_uki(sections))
    return f


def test_uki_kexec_load_uses_embedded_initrd_and_cmdline(tmp_path, debian_kernel):
    uki = open_kernel(_write_uki(tmp_path, debian_kernel), X86_64().formats)
    p, _ = crash_plan(uki, cmdline="", initrd=None)
    check_plan(p, X86_64())
    assert bytes(seg(p, "initrd").buf) == b"EMBEDDED" * 512
    assert re.match(r"console=ttyS0 from-uki (acpi_rsdp=0x[0-9a-f]+ )?elfcorehdr=", p.cmdline)
    assert bytes(seg(p, "kernel").buf[:64]) == bytes(uki.kernel.payload[:64])
    mine = load_plan(uki, cmdline="mine", initrd=b"USER")
    assert mine.cmdline == "mine" and bytes(seg(mine, "initrd").buf) == b"USER"


# -- through the CLI (syscall guard, recording backend) --------------------------

def test_cli_vmlinux_file_syscall_refused_before_the_call(vmlinux_files, tmp_path):
    rec = tmp_path / "rec.jsonl"
    code, _, err, traced = kexec_py("-p", "-s", vmlinux_files[0], record=rec, root=QEMU)
    assert code == 253 and "takes no vmlinux kernels" in err
    assert traced == [] and records(rec) == []


def test_cli_vmlinux_default_goes_to_kexec_load(vmlinux_files, tmp_path):
    rec = tmp_path / "rec.jsonl"
    code, _, err, traced = kexec_py("-p", vmlinux_files[1], "--append", "console=ttyS0", record=rec, root=QEMU)
    assert code == 0, err
    assert err == "" and traced == []           # decided without asking the kernel: nothing to report
    (call,) = records(rec)                                    # no kexec_file_load was tried
    assert call["call"] == "kexec_load" and call["flags"] == 0x3E0001


def test_cli_uki_file_syscall_passes_linux_and_initrd_as_memfds(tmp_path, debian_kernel):
    rec = tmp_path / "rec.jsonl"
    f = _write_uki(tmp_path, debian_kernel)
    code, _, err, _ = kexec_py("-l", "-s", f, record=rec, root=QEMU)
    assert code == 0, err
    (call,) = records(rec)
    assert call["kernel_sha256"] == hashlib.sha256(debian_kernel.read_bytes()).hexdigest()
    assert call["initrd_sha256"] == hashlib.sha256(b"EMBEDDED" * 512).hexdigest()
    assert call["cmdline"] == "console=ttyS0 from-uki\0" and call["flags"] == 0
    user_initrd = tmp_path / "initrd"
    user_initrd.write_bytes(b"USER")
    code, _, err, _ = kexec_py("-p", "-s", f, "--initrd", user_initrd, "--append", "irqpoll", record=rec,
                               root=QEMU)
    assert code == 0, err
    call = records(rec)[-1]
    assert call["initrd_sha256"] == hashlib.sha256(b"USER").hexdigest() and call["cmdline"] == "irqpoll\0"


def test_cli_uki_without_initrd_sets_no_initramfs(tmp_path, debian_kernel):
    rec = tmp_path / "rec.jsonl"
    f = _write_uki(tmp_path, debian_kernel, cmdline=None, initrd=None)
    code, out, err, _ = kexec_py("-p", "-s", f, "--dry-run", root=QEMU)
    assert code == 0, err and "initrd:  (none)" in out
    code, _, err, _ = kexec_py("-p", "-s", f, record=rec, root=QEMU)
    assert code == 0, err
    assert records(rec)[-1]["flags"] == 0x2 | 0x4 and records(rec)[-1]["initrd_sha256"] is None
