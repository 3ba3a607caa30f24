"""`kexec-py -p -c` on every captured x86_64 snapshot (tests/fixtures/systems/*/capture.json),
run through the command line with the recording backend, and the segments it would load
checked against the snapshot's own files, read here without kexec_py's parsers:

* the ELF core header has one PT_NOTE per possible CPU, at that CPU's crash_notes
  address, plus the vmcoreinfo note;
* its PT_LOADs cover every System RAM range but the Crash kernel ranges (all of them),
  and nothing else (besides the kernel-text map);
* every segment lies in the highest Crash kernel range, the one kexec-tools loads into
  (its get_crash_kernel_load_range: the last range; the kernel's kexec_load accepts only
  crashk_res, never crashk_low_res), and the capture kernel's e820 hands it every
  Crash kernel range as RAM;
* --dry-run prints the same segments the recording backend gets.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct

import pytest
from elftools.elf.elffile import ELFFile

from tests.conftest import SYSTEMS

CAPTURED = sorted(p.parent for p in SYSTEMS.glob("*/capture.json")
                  if json.loads(p.read_text())["arch"] == "x86_64")
NEW = {"x86_64-qemu-4cpu", "x86_64-qemu-6g", "x86_64-qemu-6g-high"}
KERNEL_TEXT = 0xFFFFFFFF80000000
INITRD = bytes(range(256)) * 3000
CAPTURE_APPEND = "console=ttyS0 nr_cpus=1 irqpoll reset_devices"
GiB = 1 << 30


def test_the_captured_fixtures_are_all_here():
    assert NEW <= {p.name for p in CAPTURED}, "a captured x86_64 fixture is missing"


# -- the snapshot, read directly ------------------------------------------------

def iomem(root, name: str) -> list[tuple[int, int]]:
    """[start, end) of every /proc/iomem line whose name contains ``name``, at any depth."""
    out = []
    for line in (root / "proc/iomem").read_text().splitlines():
        m = re.match(r"^\s*([0-9a-f]+)-([0-9a-f]+) : (.*)$", line)
        if m and name in m.group(3):
            out.append((int(m.group(1), 16), int(m.group(2), 16) + 1))
    return sorted(out)


def subtract(ranges, holes):
    out = []
    for a, b in ranges:
        pieces = [(a, b)]
        for h0, h1 in holes:
            pieces = [p for x, y in pieces for p in ((x, min(y, h0)), (max(x, h1), y)) if p[0] < p[1]]
        out.extend(pieces)
    return sorted(out)


def merged(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def possible_cpus(root) -> list[int]:
    cpus = []
    for part in (root / "sys/devices/system/cpu/possible").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


# -- running the command line -----------------------------------------------------

@pytest.fixture
def run_cli(monkeypatch, tmp_path, capsys):
    """Run kexec-py in this process with the recording backend; return (exit code, stdout,
    the recorded calls, the buffers handed to kexec_load). Any real syscall fails the test."""
    from kexec_py import cli
    from kexec_py.submit import backends, syscalls

    for name in ("kexec_load", "kexec_file_load", "reboot_kexec"):
        monkeypatch.setattr(syscalls, name, lambda *a, _n=name: pytest.fail(f"real {_n} attempted"))
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("KEXEC_PY_RECORD", str(record))
    monkeypatch.delenv("KEXEC_PY_RECORD_FAIL", raising=False)
    from tests.recording import recorder_from_environment
    monkeypatch.setattr(backends, "backend_for", recorder_from_environment())
    buffers: list[list[tuple[bytes, int, int]]] = []
    original = backends.RecordingBackend.kexec_load

    def keep(self, entry, segments, flags):
        buffers.append([(bytes(buf), mem, memsz) for buf, mem, memsz in segments])
        return original(self, entry, segments, flags)

    monkeypatch.setattr(backends.RecordingBackend, "kexec_load", keep)

    def run(*args):
        record.unlink(missing_ok=True)
        buffers.clear()
        with pytest.raises(SystemExit) as exit_:
            cli.main([str(a) for a in args])
        out = capsys.readouterr().out
        calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
        return exit_.value.code, out, calls, list(buffers)
    return run


@pytest.fixture(params=CAPTURED, ids=lambda p: p.name)
def loaded(request, run_cli, debian_kernel, tmp_path):
    """(fixture root, the kexec_load call recorded, its segments as (buf, mem, memsz))."""
    root = request.param
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(INITRD)
    code, _, calls, buffers = run_cli("--root", root, "--arch", "x86_64", "-p", "-c", debian_kernel,
                                      "--initrd", initrd, "--append", CAPTURE_APPEND)
    assert code == 0
    (call,) = calls
    assert call["call"] == "kexec_load" and call["flags"] == 0x3E0001      # KEXEC_ON_CRASH | x86_64
    (segments,) = buffers
    assert [(s["mem"], s["memsz"], s["sha256"]) for s in call["segments"]] == \
        [(mem, memsz, hashlib.sha256(buf).hexdigest()) for buf, mem, memsz in segments]
    return root, call, segments


def core_header(segments) -> tuple[int, ELFFile]:
    cores = [(mem, buf) for buf, mem, _ in segments if buf[:4] == b"\x7fELF" and buf[16] == 4]   # ET_CORE
    assert len(cores) == 1, "exactly one segment is an ELF core header"
    mem, buf = cores[0]
    return mem, ELFFile(io.BytesIO(buf))


def zero_page(segments) -> tuple[int, bytes]:
    setups = [(mem, buf) for buf, mem, _ in segments if buf[0x202:0x206] == b"HdrS"]
    assert len(setups) == 1, "exactly one segment is a zero page"
    return setups[0]


def cmdline_of(setup_mem: int, zp: bytes) -> str:
    ptr = struct.unpack_from("<I", zp, 0x228)[0] | struct.unpack_from("<I", zp, 0xC8)[0] << 32
    off = ptr - setup_mem
    return zp[off:zp.index(b"\0", off)].decode()


# -- the tests --------------------------------------------------------------------

def test_one_note_per_possible_cpu_and_vmcoreinfo(loaded):
    root, _, segments = loaded
    _, elf = core_header(segments)
    notes = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_NOTE"]
    cpus = possible_cpus(root)
    cpu_dir = root / "sys/devices/system/cpu"
    want = [(int((cpu_dir / f"cpu{c}/crash_notes").read_text(), 16),
             int((cpu_dir / f"cpu{c}/crash_notes_size").read_text())) for c in cpus]
    addr, size = ((root / "sys/kernel/vmcoreinfo").read_text().split())
    want.append((int(addr, 16), int(size, 16)))
    assert [(n.p_paddr, n.p_memsz) for n in notes] == want
    assert len(notes) == len(cpus) + 1


def test_loads_cover_all_ram_but_every_crash_range(loaded):
    root, _, segments = loaded
    _, elf = core_header(segments)
    loads = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]
    ram = [(h.p_paddr, h.p_paddr + h.p_memsz) for h in loads if h.p_vaddr < KERNEL_TEXT]
    crash = iomem(root, "Crash kernel")
    assert merged(ram) == merged(subtract(merged(iomem(root, "System RAM")), crash))
    for a, b in ram:
        assert all(b <= c0 or c1 <= a for c0, c1 in crash), "a crash range would be dumped"
    text = [h for h in loads if h.p_vaddr >= KERNEL_TEXT]
    assert len(text) == 1 and any(a <= text[0].p_paddr < b for a, b in ram)


def test_backup_source_is_dumped_from_its_copy(loaded):
    _, _, segments = loaded
    _, elf = core_header(segments)
    loads = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_LOAD" and s.header.p_vaddr < KERNEL_TEXT]
    moved = [h for h in loads if h.p_offset != h.p_paddr]
    assert len(moved) == 1 and moved[0].p_paddr + moved[0].p_memsz <= 0xA0000
    backup = [(mem, memsz) for buf, mem, memsz in segments if mem == moved[0].p_offset]
    assert backup and backup[0][1] >= moved[0].p_memsz


def test_segments_lie_in_the_highest_crash_range(loaded):
    root, call, segments = loaded
    crash = iomem(root, "Crash kernel")
    top = crash[-1]
    for _, mem, memsz in segments:
        assert top[0] <= mem and mem + memsz <= top[1], f"segment {mem:#x}+{memsz:#x} outside {top}"
    assert top[0] <= call["entry"] < top[1]


def test_cmdline_and_capture_e820(loaded):
    root, _, segments = loaded
    hdr_mem, _ = core_header(segments)
    setup_mem, zp = zero_page(segments)
    line = cmdline_of(setup_mem, zp)
    assert line.startswith(CAPTURE_APPEND + " ")
    assert re.findall(r"\belfcorehdr=(\S*)", line) == [f"{hdr_mem >> 10}K"]
    n = zp[0x1E8]
    e820 = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    ram = [(a, a + s) for a, s, t in e820 if t == 1]
    for c0, c1 in iomem(root, "Crash kernel"):          # every crash range is the capture kernel's RAM
        inside = [(a, b) for a, b in ram if c0 <= a and b <= c1]
        assert inside, f"crash range {c0:#x}-{c1:#x} missing from the capture kernel's e820"
        assert c1 - c0 - sum(b - a for a, b in inside) < 1 << 20     # less only the backup and elfcorehdr
    assert any(b <= 0xA0000 for a, b in ram)                      # and the backed-up low RAM


def test_dry_run_prints_what_is_loaded(run_cli, debian_kernel, tmp_path):
    """--dry-run plans the same segments and calls nothing (on the two-range machine)."""
    root = SYSTEMS / "x86_64-qemu-6g-high"
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(INITRD)
    args = ("--root", root, "--arch", "x86_64", "-p", "-c", debian_kernel, "--initrd", initrd,
            "--append", CAPTURE_APPEND)
    code, out, calls, _ = run_cli(*args, "--dry-run")
    assert code == 0 and calls == []
    printed = sorted((int(m, 16), int(s, 16)) for m, s in
                     re.findall(r"^  \w+ +0x([0-9a-f]+) +0x([0-9a-f]+) +0x[0-9a-f]+$", out, re.M))
    code, _, calls, _ = run_cli(*args)
    assert code == 0
    assert printed == sorted((s["mem"], s["memsz"]) for s in calls[0]["segments"])
    low, high = iomem(root, "Crash kernel")
    assert f"crash region {high[0]:#x}-{high[1] - 1:#x}" in out


# -- what each new machine is for ------------------------------------------------

def test_6g_high_has_a_crash_range_on_each_side_of_4g():
    root = SYSTEMS / "x86_64-qemu-6g-high"
    (low, high) = iomem(root, "Crash kernel")
    assert low[1] <= 4 * GiB <= high[0]
    assert (low[1] - low[0], high[1] - high[0]) == (128 << 20, 256 << 20)
    # /sys/kernel/kexec_crash_size is the high range only (crashk_res)
    assert int((root / "sys/kernel/kexec_crash_size").read_text()) == high[1] - high[0]


def test_6g_plain_crashkernel_stays_below_4g_and_high_ram_is_dumped(run_cli, debian_kernel):
    root = SYSTEMS / "x86_64-qemu-6g"
    (crash,) = iomem(root, "Crash kernel")
    assert crash[1] <= 4 * GiB
    code, _, _, buffers = run_cli("--root", root, "--arch", "x86_64", "-p", "-c", debian_kernel,
                                  "--append", CAPTURE_APPEND)
    assert code == 0
    _, elf = core_header(buffers[0])
    loads = [s.header for s in elf.iter_segments() if s.header.p_type == "PT_LOAD"]
    assert any(h.p_paddr >= 4 * GiB and h.p_memsz >= GiB for h in loads)
    # the PCI hole below 4 GiB is not dumped
    assert not any(h.p_paddr < 4 * GiB and 0xC0000000 < h.p_paddr + h.p_memsz for h in loads)


def test_4cpu_has_four_possible_cpus():
    assert possible_cpus(SYSTEMS / "x86_64-qemu-4cpu") == [0, 1, 2, 3]


def test_print_ckr_size_is_the_high_range(run_cli):
    """--print-ckr-size names the range loads go to: the highest (kexec-tools does the same)."""
    root = SYSTEMS / "x86_64-qemu-6g-high"
    code, out, calls, _ = run_cli("--root", root, "--print-ckr-size")
    low, high = iomem(root, "Crash kernel")
    assert code == 0 and calls == [] and out.strip() == str(high[1] - high[0])
