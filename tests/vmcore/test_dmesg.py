"""kexec_py.vmcore.dmesg against Debian's vmcore-dmesg (kexec-tools 2.0.25), on synthetic
vmcores laid out from the kernel's structures (tests/vmcore/synthetic.py).

The expected output is always vmcore-dmesg's on the same file (run behind the guard,
which pytest's process passes to its children), never a string written here; the few
lines spelled out below check that the synthetic file exercises what it claims to
(escapes, skipped records, time stamps), so a broken builder cannot make both tools
agree on nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.vmcore import synthetic as S

SPACES = {"x86_64": S.x86_64_space, "arm64": S.arm64_space, "arm64-before-5.4": S.arm64_pre_5_4_space,
          "ppc64le": S.ppc64_space, "ppc64-big-endian": lambda: S.ppc64_space("big")}


@pytest.fixture(scope="module")
def vmcore_dmesg() -> Path:
    """Debian's vmcore-dmesg from the x86_64 guest inputs (fetched into the cache on first use)."""
    from tests.guest.fetch import fetch
    path = fetch("x86_64").root / "sbin" / "vmcore-dmesg"
    assert path.is_file(), f"{path} missing: run scripts/guest-deps"
    return path


def run(cmd: list, core: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*map(str, cmd), str(core)], capture_output=True, timeout=60)


def ours(core: Path, *flags: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "kexec_py.vmcore.dmesg", *flags], core)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_same(reference: subprocess.CompletedProcess, mine: subprocess.CompletedProcess) -> None:
    assert reference.returncode == 0, reference.stderr
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.splitlines() == reference.stdout.splitlines()
    assert mine.stdout == reference.stdout


@pytest.mark.parametrize("arch", SPACES)
def test_lockless_ring_buffer(arch, tmp_path, vmcore_dmesg):
    core = write(tmp_path, "vmcore", S.lockless_vmcore(SPACES[arch]()))
    reference = run([vmcore_dmesg], core)
    assert_same(reference, ours(core))
    assert_same(reference, ours(core, "--by-header"))
    out = reference.stdout
    assert b"[    7.000000] KPY-TOKEN-0123456789abcdef written by the kexec_py guest harness\n" in out
    assert b"[123456789.012345] a time stamp" in out
    assert b"escape \\x1b[1mbold\\x1b[0m, DEL \\x7f, NUL \\x00 end\n" in out
    assert b"caf\\xc3\\xa9" in out and b"line one\nline two\r\vform\ffeed\n" in out
    assert b"[    4.000000] \n" in out                   # a data-less record: the time stamp alone
    assert b"truncated: only these bytes" in out
    for skipped in (b"reusable", b"stale", b"still being written"):
        assert skipped not in out


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_lockless_ids_not_near_the_wrap(arch, tmp_path, vmcore_dmesg):
    core = write(tmp_path, "vmcore", S.lockless_vmcore(SPACES[arch](), first_id=5, first_lpos=0))
    assert_same(run([vmcore_dmesg], core), ours(core))


def test_direct_map_with_a_wrong_p_vaddr(tmp_path, vmcore_dmesg):
    """The direct map's PT_LOAD says a wrong p_vaddr: vmcore-dmesg cannot find the log
    (it trusts p_vaddr), ours translates through VMCOREINFO and the page tables and
    prints what vmcore-dmesg prints from the file with the right p_vaddr."""
    good = write(tmp_path, "good", S.lockless_vmcore(S.x86_64_space()))
    bad = write(tmp_path, "bad", S.lockless_vmcore(S.x86_64_space(), wrong_linear_vaddr=True))
    assert run([vmcore_dmesg], bad).returncode != 0
    assert_same(run([vmcore_dmesg], good), ours(bad))
    by_header = ours(bad, "--by-header")
    assert by_header.returncode == 1 and by_header.stdout == b""
    assert b"no PT_LOAD maps virtual address" in by_header.stderr


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "ppc64le"])
def test_variable_length_records(arch, tmp_path, vmcore_dmesg):
    core = write(tmp_path, "vmcore", S.variable_length_vmcore(SPACES[arch]()))
    reference = run([vmcore_dmesg], core)
    assert_same(reference, ours(core))
    out = reference.stdout
    assert b"KPY-TOKEN-fedcba9876543210 after the wrap" in out
    assert b"SUBSYSTEM" not in out                      # dictionaries are not printed
    assert out.count(b"[    0.000000] \n") == 1          # the end-of-buffer marker


def test_plain_character_buffer(tmp_path, vmcore_dmesg):
    text = b"".join(b"<6>line %d of the old log\n" % i for i in range(30))
    core = write(tmp_path, "vmcore", S.plain_vmcore(S.x86_64_space(), text))
    reference = run([vmcore_dmesg], core)
    assert_same(reference, ours(core))
    assert text.endswith(reference.stdout) and len(reference.stdout) == 256


def test_function_writes_the_same_bytes(tmp_path, vmcore_dmesg):
    import io

    from kexec_py.vmcore.dmesg import dmesg
    core = write(tmp_path, "vmcore", S.lockless_vmcore(S.arm64_space()))
    out = io.BytesIO()
    dmesg(str(core), out)
    assert out.getvalue() == run([vmcore_dmesg], core).stdout


@pytest.mark.parametrize("name, data, words", [
    ("empty", b"", "not an ELF file"),
    ("text", b"hello, I am not a core file\n" * 4, "not an ELF file"),
    ("no-note", S.elf_core(S.EM_X86_64, "little", S.Memory(), ""), "no VMCOREINFO"),
])
def test_bad_input_is_one_line(name, data, words, tmp_path):
    core = write(tmp_path, name, data)
    result = ours(core)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and str(core) in lines[0] and words in lines[0], lines


def test_a_program_header_offset_past_any_file_is_one_line(tmp_path, vmcore_dmesg):
    """kexec-tools 2.0.25 on Debian 12's arm64 kernel builds such a header (its /proc/vmcore
    has a size near 2**64): both readers fail, ours in one line."""
    import struct
    data = bytearray(S.lockless_vmcore(S.x86_64_space()))
    struct.pack_into("<Q", data, 64 + 56 * 2 + 8, 0xFFFF_BCD4_6601_E000)      # the direct map's p_offset
    core = write(tmp_path, "broken", bytes(data))
    assert run([vmcore_dmesg], core).returncode != 0
    result = ours(core)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "past the end of any file" in lines[0], lines


def test_missing_file_is_one_line(tmp_path):
    result = ours(tmp_path / "absent")
    assert result.returncode == 1 and len(result.stderr.decode().splitlines()) == 1
    assert "cannot open" in result.stderr.decode()
