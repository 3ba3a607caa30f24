"""The s390x plans on the snapshot captured from a QEMU guest running Debian's s390x kernel, with
that very image. Byte-for-byte agreement with Debian's kexec-tools is tests/test_differential_s390x.py;
here: what the memory facts do (offline memory blocks, a guest changed in a copy of the
snapshot), the refusals, and the placement rule's numbers against the documented layout
(arch/s390/include/asm/setup.h, read with plain struct)."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest

from kexec_py.arch.base import LoadInputs
from kexec_py.arch.s390x import S390x, read_ram
from kexec_py.errors import NoSpace
from kexec_py.image.s390_image import parse_s390_image
from kexec_py.plan.purgatory import load_purgatory
from kexec_py.plan.ranges import Range
from kexec_py.system.view import SystemView
from tests.conftest import SYSTEMS

SNAPSHOT = SYSTEMS / "s390x-qemu-2cpu"
INITRD = b"070701" + bytes(range(256)) * 40


@pytest.fixture(scope="module")
def kernel():
    from tests.guest.fetch import fetch
    return fetch("s390x").kernel


def _iomem_ram(root: Path) -> list[tuple[int, int]]:
    """System RAM lines of the snapshot's /proc/iomem, read here on their own."""
    out = []
    for line in (root / "proc/iomem").read_text().splitlines():
        if not line.startswith(" ") and line.endswith(": System RAM"):
            a, b = line.split(" :")[0].split("-")
            out.append((int(a, 16), int(b, 16) + 1))
    return out


def _plan(root: Path, kernel: Path, *, initrd=INITRD, cmdline="console=ttysclp0"):
    sys = SystemView(root)
    arch = S390x()
    image = parse_s390_image(kernel.read_bytes(), path=str(kernel))
    inputs = LoadInputs(cmdline=cmdline, initrd=initrd, page_size=sys.page_size)
    return arch.plan_load(image, inputs, arch.read_load_facts(sys))


def test_load_plan_on_the_snapshot(kernel):
    plan = _plan(SNAPSHOT, kernel)
    size = kernel.stat().st_size
    kernel_seg, initrd_seg = plan.segments
    assert (plan.entry, kernel_seg.mem, kernel_seg.bufsz) == (0x10000, 0x10000, size - 0x10000)
    assert initrd_seg.mem == max(8 << 20, -(-size // (1 << 20)) * (1 << 20)) and initrd_seg.buf == INITRD
    assert struct.unpack_from(">QQ", kernel_seg.buf, 0x408) == (initrd_seg.mem, len(INITRD))
    assert bytes(kernel_seg.buf[0x480:0x480 + 17]) == b"console=ttysclp0\0"
    assert plan.flags == 22 << 16                       # KEXEC_ARCH_S390 (EM_S390 = 22)
    ram = _iomem_ram(SNAPSHOT)
    assert [(r.start, r.end) for r in plan.allowed] == ram
    assert all(any(a <= s.mem and s.mem + s.memsz <= b for a, b in ram) for s in plan.segments)


def _copy_with_offline(tmp_path: Path, blocks: list[int]) -> Path:
    root = tmp_path / "s390x"
    shutil.copytree(SNAPSHOT, root)
    for n in blocks:
        (root / f"sys/devices/system/memory/memory{n}/state").write_text("offline\n")
    return root


def test_offline_memory_blocks_are_not_ram(tmp_path):
    root = _copy_with_offline(tmp_path, [2, 4])
    size = int((root / "sys/devices/system/memory/block_size_bytes").read_text(), 16)
    (start, end), = _iomem_ram(root)
    expected = [Range(start, 2 * size), Range(3 * size, 4 * size), Range(5 * size, end)]
    assert read_ram(SystemView(root)) == expected


def test_offline_memory_under_the_kernel_is_refused(tmp_path, kernel):
    root = _copy_with_offline(tmp_path, [0])
    with pytest.raises(NoSpace, match="kernel .* is not in usable memory"):
        _plan(root, kernel)


CRASH_BASE, CRASH_SIZE = 0x4800_0000, 384 << 20      # what crashkernel=384M reserved on the built kernel


def _crash_plan(tmp_path: Path, kernel: Path, *, initrd=INITRD, no_checks=False, base=CRASH_BASE, size=CRASH_SIZE):
    """plan_crash on a copy of the snapshot whose iomem has a "Crash kernel" range."""
    root = tmp_path / "s390x-crash"
    shutil.copytree(SNAPSHOT, root)
    iomem = root / "proc/iomem"
    iomem.write_text(iomem.read_text() + f"  {base:08x}-{base + size - 1:08x} : Crash kernel\n")
    sys = SystemView(root)
    arch = S390x()
    image = parse_s390_image(kernel.read_bytes(), path=str(kernel))
    inputs = LoadInputs(cmdline="console=ttysclp0", initrd=initrd, page_size=sys.page_size, no_checks=no_checks)
    return arch.plan_crash(image, inputs, arch.read_crash_facts(sys), load_purgatory("s390x"))


def test_capture_kernel_plan(tmp_path, kernel):
    """The capture kernel in the crash region as it will be after the swap with the memory
    from 0 (kernel at base + 0x10000, the initrd at base + its usual offset, the parameter
    area naming the post-swap initrd address and OLDMEM_BASE/OLDMEM_SIZE = the region), the
    purgatory below the kernel as the entry, its digest the SHA-256 of the other segments."""
    plan = _crash_plan(tmp_path, kernel)
    size = kernel.stat().st_size
    purg, kernel_seg, initrd_seg = plan.segments
    assert (kernel_seg.mem, kernel_seg.bufsz) == (CRASH_BASE + 0x10000, size - 0x10000)
    offset = max(8 << 20, -(-size // (1 << 20)) * (1 << 20))
    assert initrd_seg.mem == CRASH_BASE + offset and initrd_seg.buf == INITRD
    assert struct.unpack_from(">QQQQ", kernel_seg.buf, 0x408) == (offset, len(INITRD), CRASH_BASE, CRASH_SIZE)
    assert bytes(kernel_seg.buf[0x480:0x480 + 17]) == b"console=ttysclp0\0"
    assert plan.flags == (22 << 16) | 1                 # KEXEC_ARCH_S390 | KEXEC_ON_CRASH
    assert CRASH_BASE + 0x2000 <= purg.mem and purg.mem + purg.memsz <= CRASH_BASE + 0x10000
    assert purg.mem <= plan.entry < purg.mem + purg.memsz
    assert [(r.start, r.end) for r in plan.allowed] == [(CRASH_BASE, CRASH_BASE + CRASH_SIZE)]
    linked = load_purgatory("s390x").link(purg.mem)
    def symbol(name, n):
        at = linked.symbol_addr(name) - purg.mem
        return bytes(purg.buf[at:at + n])
    h = hashlib.sha256()
    for seg in (kernel_seg, initrd_seg):
        h.update(bytes(seg.buf) + bytes(seg.memsz - len(seg.buf)))
    assert symbol("sha256_digest", 32) == h.digest()
    assert struct.unpack(">QQQQ", symbol("sha256_regions", 32)) == (kernel_seg.mem, kernel_seg.memsz,
                                                                     initrd_seg.mem, initrd_seg.memsz)
    def number(name):
        return int.from_bytes(symbol(name, 8), "big")
    assert number("kernel_entry") == 0x10010                   # STARTUP_KDUMP_OFFSET, after the swap
    assert (number("crash_base"), number("crash_size")) == (CRASH_BASE, CRASH_SIZE)
    assert (number("self_start"), number("self_size")) == (purg.mem, purg.memsz)
    assert symbol("skip_checks", 1) == b"\0"
    at = linked.symbol_addr("skip_checks") - purg.mem        # -i: the purgatory skips the check
    assert _crash_plan(tmp_path / "i", kernel, no_checks=True).segments[0].buf[at] == 1


def test_capture_kernel_too_big_for_the_crash_region(tmp_path, kernel):
    with pytest.raises(NoSpace, match="initrd .* is not in usable memory"):
        _crash_plan(tmp_path, kernel, initrd=bytes(CRASH_SIZE))


def test_crash_region_overlapping_what_it_is_swapped_with_is_refused(tmp_path, kernel):
    """At the crash [base, base + size) changes places with [0, size): they must not overlap."""
    with pytest.raises(NoSpace, match="overlaps the memory from 0"):
        _crash_plan(tmp_path, kernel, base=0x1000_0000, size=0x2000_0000)


def _cli(root: Path, *args: str):
    from kexec_py import cli
    try:
        cli.main(["--root", str(root), "--arch", "s390x", "--dry-run", *args])
    except SystemExit as e:
        return e.code
    return 0


def test_p_without_crash_memory_exits_1_with_the_reason(tmp_path, kernel, capsys, monkeypatch):
    """The reason comes from the kernel's config when it is installed: Debian's s390x config
    (the package's own file) has CONFIG_CRASH_DUMP unset."""
    monkeypatch.delenv("KEXEC_PY_RECORD", raising=False)
    assert _cli(SNAPSHOT, "-p", "-c", str(kernel)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Memory for crashkernel is not reserved" in err and "CONFIG_CRASH" not in err
    root = tmp_path / "s390x"
    shutil.copytree(SNAPSHOT, root)
    release = kernel.name.removeprefix("vmlinuz-")
    config = kernel.parent / f"config-{release}"
    assert "# CONFIG_CRASH_DUMP is not set" in config.read_text()
    (root / "boot").mkdir()
    shutil.copy(config, root / "boot" / config.name)
    assert _cli(root, "-p", "-c", str(kernel)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "built without CONFIG_CRASH_DUMP" in err and config.name in err


def test_kexec_file_load_takes_a_command_line_shorter_than_the_field(kernel):
    """The kernel's s390 kexec_file_load refuses cmdline_buf_len (NUL included) >= the image's
    max_command_line_size (arch/s390/kernel/machine_kexec_file.c): CONFIG_COMMAND_LINE_SIZE
    4096 (the package's config) takes 4094 characters and the NUL."""
    import re
    config = (kernel.parent / f"config-{kernel.name.removeprefix('vmlinuz-')}").read_text()
    size = int(re.search(r"^CONFIG_COMMAND_LINE_SIZE=(\d+)$", config, re.M)[1])
    image = parse_s390_image(kernel.read_bytes(), path=str(kernel))
    assert S390x().file_inputs(image).cmdline_max == size - 1


def test_a_locked_down_kernel_takes_an_appended_pkcs7_signature(kernel):
    """s390x kernels are signed the way modules are (the kernel's s390 kexec_file_load checks
    it when secure-IPLed): the PKCS#7 blob, struct module_signature (include/linux/
    module_signature.h: five bytes, three of padding, a big-endian sig_len; id_type 2 = PKCS#7)
    and the marker. Debian's own signed s390x modules are such files."""
    from tests.guest.fetch import fetch
    arch = S390x()
    module = next((fetch("s390x").root / "lib/modules").rglob("af_key.ko"))
    assert arch.signed(module.read_bytes())
    image = kernel.read_bytes()
    assert not arch.signed(image) and not arch.signed(b"") and not arch.signed(module.read_bytes()[:-1])
    marker = b"~Module signature appended~\n"

    def sign(data, sig_len=500, id_type=2, signer_len=0):
        return data + b"\x30" * sig_len + struct.pack(">5B3xI", 0, 0, id_type, signer_len, 0, sig_len) + marker
    assert arch.signed(sign(image))
    assert not arch.signed(sign(image, id_type=1))              # PKEY_ID_PGP: not what the kernel takes
    assert not arch.signed(sign(image, signer_len=4))
    assert not arch.signed(sign(b"", sig_len=500)[500:])       # a sig_len reaching past the start


@pytest.mark.parametrize("secure", ["1\n", "0\n", None])
def test_lockdown_wants_a_signature_only_where_the_kernel_checks_one(tmp_path, kernel, capsys, monkeypatch, secure):
    """The 6.1 kernel's s390 kexec_file_load verifies the appended signature only when the
    machine was IPLed in secure mode (arch/s390/kernel/machine_kexec_file.c; ipl.c shows the
    flag as /sys/firmware/ipl/secure): otherwise a locked-down kernel takes an unsigned image,
    so kexec-py must not refuse it first. No such file: assume the kernel checks."""
    monkeypatch.delenv("KEXEC_PY_RECORD", raising=False)
    assert not S390x().signed(kernel.read_bytes())     # Debian's s390x image is unsigned
    root = tmp_path / "s390x"
    shutil.copytree(SNAPSHOT, root)
    (root / "sys/kernel/security").mkdir(parents=True, exist_ok=True)
    (root / "sys/kernel/security/lockdown").write_text("none [integrity] confidentiality\n")
    if secure is not None:
        (root / "sys/firmware/ipl").mkdir(parents=True, exist_ok=True)
        (root / "sys/firmware/ipl/secure").write_text(secure)
    for syscall in ("-s", "-c"):
        code = _cli(root, "-l", syscall, str(kernel), "--append=console=ttysclp0")
        out = capsys.readouterr()
        if secure == "0\n":
            assert code == 0 and "syscall: kexec_file_load" in out.out, out
        else:
            assert code != 0 and "carries no signature" in out.err, out
