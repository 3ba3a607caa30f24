"""kexec-py against Debian's kexec-tools 2.0.25, segment by segment, on every
x86_64 (and i386) snapshot captured from a QEMU guest.

Both programs load the same Debian kernel and initrd for the same snapshot
(tests/differential/run.py: kexec-tools in a private namespace with the
snapshot over /proc and /sys and capture.c preloaded; kexec-py with its
recording backend), and the kexec_load each would make is turned into facts
(tests/differential/facts.py): the ELF core header's PT_NOTEs and PT_LOADs, the
capture kernel's e820 and command line, the backup region, the segments'
addresses and zero-page fields. Every fact must be equal, except where a
difference is INTENDED: each such entry says why (the same reasons are in
docs/differences.md), undoes exactly that difference on kexec-tools' side, and
must actually apply where it is expected, so an entry that is no longer needed
fails too.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import SYSTEMS
from tests.differential import facts as F
from tests.differential import run as R

# Snapshots captured from guests (scripts/capture-snapshot): they have /proc/kcore, which
# kexec-tools needs on x86_64 (the hand-written ones do not).
FIXTURES = [(arch, p) for arch in ("x86_64", "i386")
            for p in sorted(SYSTEMS.glob(f"{arch}-*")) if (p / "proc" / "kcore").exists()]

KERNEL, INITRD = "@KERNEL", "@INITRD"
CASES = {
    "p": ["-p", "-c", KERNEL, f"--initrd={INITRD}", "--append=console=ttyS0 irqpoll nr_cpus=1"],
    "p-reuse": ["-p", "-c", KERNEL, "--reuse-cmdline"],
    "p-memmap": ["-p", "-c", KERNEL, "--pass-memmap-cmdline", "--append=console=ttyS0"],
    "l": ["-l", "-c", KERNEL, f"--initrd={INITRD}", "--append=console=ttyS0"],
}
INITRD_BYTES = bytes(range(256)) * (3 * 4096 + 7)          # 3 MiB and a bit: not a page multiple
DOCS = Path(__file__).parent.parent / "docs" / "differences.md"


@dataclass(frozen=True)
class Ctx:
    arch: str
    case: str
    args: list[str]
    fixture: Path
    kernel: bytes

    @property
    def crash(self) -> bool:
        return "-p" in self.args

    @property
    def memmap(self) -> bool:
        return "--pass-memmap-cmdline" in self.args


@dataclass(frozen=True)
class Intended:
    reason: str
    expected: Callable[[Ctx, dict], bool]             # (ctx, theirs) -> must this difference show?
    undo: Callable[[dict, dict, Ctx], dict | None]    # (theirs, ours, ctx) -> theirs without it, or None


def _rng_seed(theirs, ours, ctx):
    if "segment.rng_seed" not in theirs or "segment.rng_seed" in ours:
        return None
    t = dict(theirs)
    del t["segment.rng_seed"]
    t["segments.roles"] = tuple(r for r in t["segments.roles"] if r != "rng_seed")
    return t


def _efi_in_setup(theirs, ours, ctx):
    keys = ("segment.setup_efi", "segment.efi_memmap")
    if not all(k in theirs for k in keys) or any(k in ours for k in keys):
        return None
    t = {k: v for k, v in theirs.items() if k not in keys}
    t["segments.roles"] = tuple(r for r in t["segments.roles"] if r not in ("setup_efi", "efi_memmap"))
    return t


def _runtime_map_order(theirs, ours, ctx):
    t, o = theirs.get("efi.memmap"), ours.get("efi.memmap")
    if not t or not o or t == o or sorted(t) != sorted(o):
        return None
    return {**theirs, "efi.memmap": o}


def _merged_adjacent_ram(theirs, ours, ctx):
    """theirs' PT_LOADs with each run of contiguous ones (paddr, vaddr and offset) made one."""
    loads = theirs.get("core.loads")
    if not loads:
        return None
    merged: list[tuple] = []
    for ld in loads:
        if merged:
            off, vaddr, paddr, filesz, memsz, flags, align = merged[-1]
            if ld[2] == paddr + memsz and ld[1] == vaddr + memsz and ld[0] == off + filesz and ld[5:] == (flags, align):
                merged[-1] = (off, vaddr, paddr, filesz + ld[3], memsz + ld[4], flags, align)
                continue
        merged.append(ld)
    if len(merged) == len(loads) or tuple(merged) != ours.get("core.loads"):
        return None
    return {**theirs, "core.loads": tuple(merged), "core.phdr_order": ours["core.phdr_order"],
            "segment.elfcorehdr.bufsz": ours["segment.elfcorehdr.bufsz"]}


def _adjacent_ram_in_iomem(ctx: Ctx) -> bool:
    """Does the snapshot's /proc/iomem list top-level System RAM ranges that touch (the EFI stub's
    setup_data boundaries split them on UEFI guests)?"""
    ends, starts = set(), set()
    for line in (ctx.fixture / "proc/iomem").read_text().splitlines():
        if not line.startswith(" ") and line.endswith(": System RAM"):
            lo, hi = (int(x, 16) for x in line.split(" : ")[0].split("-"))
            ends.add(hi + 1)
            starts.add(lo)
    return bool(ends & starts)


def _own_purgatory(theirs, ours, ctx):
    keys = ["segment.purgatory", "segment.setup", "segment.setup.bufsz"]
    if all(theirs.get(k) == ours.get(k) for k in keys):
        return None
    for side in (theirs, ours):          # the same order: kernel < setup < purgatory (< elfcorehdr)
        kernel, setup, purg = side["segment.kernel"], side["segment.setup"], side["segment.purgatory"]
        assert setup[0] < purg[0] and sum(setup) <= purg[0], side
        assert setup[0] < kernel[0] if ctx.arch == "i386" and not ctx.crash else sum(kernel) <= setup[0], side
        if ctx.crash:
            assert sum(purg) <= side["segment.elfcorehdr"][0], side
    if theirs.get("segment.initrd") != ours.get("segment.initrd"):
        # an initrd placed top-down right below the setup or purgatory moves with them
        for side in (theirs, ours):
            top = sum(side["segment.initrd"])
            above = min(v[0] for k, v in side.items() if k.startswith("segment.") and isinstance(v, tuple)
                        and v[0] >= top)
            assert top == above and above in (side["segment.setup"][0], side["segment.purgatory"][0]), side
        keys += ["segment.initrd", "zeropage.initrd"]
    return {**theirs, **{k: ours[k] for k in keys}}


def _backup_tail(t: dict) -> tuple | None:
    """kexec-tools' e820 entry for the end of the backup segment's last page, if any."""
    if not t.get("backup") or "segment.backup" not in t:
        return None
    src, size, dst = t["backup"]
    mem, memsz = t["segment.backup"]
    start = dst + -(-size // 1024) * 1024
    return (start, mem + memsz - 1, "ram") if start < mem + memsz else None


def _backup_page_tail(theirs, ours, ctx):
    tail = _backup_tail(theirs)
    if tail is None or tail not in theirs["e820"] or tail in ours["e820"]:
        return None
    return {**theirs, "e820": tuple(e for e in theirs["e820"] if e != tail)}


def _memmap_e820(theirs, ours, ctx):
    keys = ("e820", "zeropage.alt_mem_k", "zeropage.ext_mem_k")
    exact = all("memmap=exactmap" in side["cmdline.added"] for side in (theirs, ours))
    if not exact or all(theirs[k] == ours[k] for k in keys):
        return None
    # ours: the zero page holds the same map the memmap= options (compared as they are) give
    ram = [f"memmap={(end + 1 - start) >> 10}K@{start >> 10}K" for start, end, kind in ours["e820"]
           if kind == "ram" and end + 1 - start >= 100 * 1024]
    assert [w for w in ours["cmdline.added"] if re.fullmatch(r"memmap=\d+K@\d+K", w)] == ram
    return {**theirs, **{k: ours[k] for k in keys}}


def _firmware_map_from_0(theirs, ours, ctx):
    first = [e for e in theirs["e820"] if e[0] == 0x400 and e[2] == "ram"]
    if not first or (0, first[0][1], "ram") not in ours["e820"]:
        return None
    return {**theirs, "e820": tuple((0, e[1], e[2]) if e == first[0] else e for e in theirs["e820"])}


def _root_flags_dev(theirs, ours, ctx):
    if theirs["zeropage.root_flags_dev"] != (0xFFFF, 0x0300):
        return None
    image = (int.from_bytes(ctx.kernel[0x1F2:0x1F4], "little"), int.from_bytes(ctx.kernel[0x1FC:0x1FE], "little"))
    return {**theirs, "zeropage.root_flags_dev": image}


def _crashkernel_words(theirs, ours, ctx):
    if not any(w.startswith("crashkernel=") for w in theirs["cmdline.added"]):
        return None
    keep = lambda words: [w for w in words if not w.startswith("crashkernel=")]   # noqa: E731
    return {**theirs, "cmdline": " ".join(keep(theirs["cmdline"].split())),
            "cmdline.added": tuple(keep(theirs["cmdline.added"]))}


def _lowmem_split(theirs, ours, ctx):
    """i386: the PT_LOADs of RAM are split where the linear map ends (p_vaddr -1 above)."""
    def split(loads):
        high = [ld for ld in loads if ld[1] == 0xFFFFFFFF]
        return min(ld[2] for ld in high) if high else None
    at, want = split(theirs.get("core.loads", ())), split(ours.get("core.loads", ()))
    if at is None or want is None or at == want:
        return None
    assert at == 0x38000000, f"kexec-tools split lowmem at {at:#x}"       # its fixed 896 MiB
    ram = []                                    # theirs' RAM PT_LOADs as paddr ranges, merged at the split
    for ld in theirs["core.loads"][1:]:
        if ram and ram[-1][1] == ld[2] == at:
            ram[-1][1] = ld[2] + ld[3]
        else:
            ram.append([ld[2], ld[2] + ld[3], ld])
    loads = [theirs["core.loads"][0]]
    for start, end, ld in ram:
        offset, vaddr, flags_align = ld[0], ld[1], ld[5:]
        if start < want < end:                  # re-split at kexec-py's limit
            loads.append((offset, vaddr, start, want - start, want - start, *flags_align))
            loads.append((want, 0xFFFFFFFF, want, end - want, end - want, *flags_align))
        else:
            loads.append((offset, vaddr, start, end - start, end - start, *flags_align))
    return {**theirs, "core.loads": tuple(loads)}


def _kernel_init_size(theirs, ours, ctx):
    """i386: the kernel segment's memsz is the image's init_size, not the file's protected-mode part."""
    mem, memsz = theirs["segment.kernel"]
    payload = len(ctx.kernel) - ((ctx.kernel[0x1F1] or 4) + 1) * 512
    init_size = int.from_bytes(ctx.kernel[0x260:0x264], "little")
    page = lambda n: -(-n // 4096) * 4096            # noqa: E731
    if memsz != page(payload) or ours["segment.kernel"] != (mem, page(init_size)) or init_size <= payload:
        return None
    return {**theirs, "segment.kernel": ours["segment.kernel"]}


def _several_crashkernel(ctx: Ctx) -> bool:
    return len(re.findall(r"(?:^|\s)crashkernel=", (ctx.fixture / "proc/cmdline").read_text())) > 1


def _efi_handed_on(ctx: Ctx) -> bool:
    return ctx.arch == "x86_64" and (ctx.fixture / "sys/firmware/efi/runtime-map").is_dir()


INTENDED = {
    "adjacent-ram-merged": Intended(
        "ELF core header: kexec-py merges System RAM ranges of /proc/iomem that touch into one PT_LOAD; "
        "kexec-tools 2.0.25 gives each its own (its header is then larger). The memory described is the same",
        lambda ctx, t: ctx.crash and _adjacent_ram_in_iomem(ctx), _merged_adjacent_ram),
    "efi-in-setup": Intended(
        "kexec-py carries the SETUP_EFI setup_data and the EFI runtime map (which efi_info points at) "
        "inside the setup segment, as the kernel's own kexec_file_load does; kexec-tools gives each a "
        "page-sized segment of its own, bottom-up from 1 MiB. Their contents and the setup_data chain "
        "(compared) are the same",
        lambda ctx, t: _efi_handed_on(ctx), _efi_in_setup),
    "efi-runtime-map-order": Intended(
        "kexec-py lists the EFI runtime map in the order of /sys/firmware/efi/runtime-map/N (the "
        "running kernel's); kexec-tools in readdir() order, which sysfs sorts by a hash of the names. "
        "The descriptors are the same; the kernel maps each on its own",
        lambda ctx, t: _efi_handed_on(ctx) and len(t.get("efi.memmap") or ()) > 2, _runtime_map_order),
    "rng-seed-in-setup": Intended(
        "kexec-py carries the SETUP_RNG_SEED setup_data inside the setup segment, as the kernel's own "
        "kexec_file_load does; kexec-tools gives it a page-sized segment of its own. The setup_data "
        "chain (compared) is the same",
        lambda ctx, t: True, _rng_seed),
    "own-purgatory-and-setup": Intended(
        "kexec-py's purgatory is its own (smaller), and its setup segment holds only the zero page, the "
        "command line and the RNG seed, not the bzImage's real-mode code, so both are smaller and sit "
        "elsewhere below the ELF core header; the order of the segments is the same",
        lambda ctx, t: True, _own_purgatory),
    "backup-page-tail": Intended(
        "kexec-tools 2.0.25 removes only the 1 KiB-rounded backup size from the capture kernel's e820 "
        "and leaves the rest of the backup segment's last page as RAM, though the segment covers it; "
        "kexec-py removes the whole segment",
        lambda ctx, t: ctx.crash and not ctx.memmap and _backup_tail(t) is not None, _backup_page_tail),
    "pass-memmap-e820": Intended(
        "with --pass-memmap-cmdline kexec-tools puts the machine's whole memory map in the zero page "
        "(memmap=exactmap makes the kernel ignore it); kexec-py puts the capture kernel's map there "
        "too, the same one the memmap= options give",
        lambda ctx, t: ctx.memmap, _memmap_e820),
    "firmware-map-from-0": Intended(
        "-l: kexec-py hands on /sys/firmware/memmap as it is (RAM from 0), as the kernel's own "
        "kexec_file_load does; kexec-tools starts the first RAM entry at 0x400 (its hole finder must "
        "not use the real-mode IVT). The new kernel reserves the first page itself",
        lambda ctx, t: not ctx.crash, _firmware_map_from_0),
    "root-flags-dev": Intended(
        "kexec-py leaves root_flags and root_dev as the kernel image's setup header has them, as the "
        "boot protocol and the kernel's own kexec_file_load do; kexec-tools writes 0xFFFF and 0x0300 "
        "(/dev/hda)",
        lambda ctx, t: True, _root_flags_dev),
    "every-crashkernel-removed": Intended(
        "--reuse-cmdline -p: kexec-py removes every crashkernel= (as kexec-tools does since 2.0.32); "
        "2.0.25 removes only the first, so a capture kernel of a crashkernel=,high + ,low machine "
        "would try to reserve crash memory itself",
        lambda ctx, t: ctx.crash and "--reuse-cmdline" in ctx.args and _several_crashkernel(ctx),
        _crashkernel_words),
    "i386-lowmem-from-kcore": Intended(
        "i386 ELF core header: kexec-py ends the linearly mapped RAM (PT_LOADs with a p_vaddr) where the "
        "running kernel's /proc/kcore says its lowmem ends (0x36ffe000 on the snapshot, as its boot log "
        "says); kexec-tools assumes 896 MiB (0x38000000) and gives RAM up there p_vaddr "
        "PAGE_OFFSET + paddr, which is vmalloc space in that kernel",
        lambda ctx, t: ctx.arch == "i386" and ctx.crash, _lowmem_split),
    "i386-kernel-init-size": Intended(
        "i386: kexec-py reserves the kernel's init_size (what it needs to decompress and run), as "
        "kexec-tools does since 2.0.30 (ec3e4df); 2.0.25 reserves only the size of the file's "
        "protected-mode part",
        lambda ctx, t: ctx.arch == "i386", _kernel_init_size),
}


def _facts(capture: Path, ctx: Ctx, user_cmdline: str) -> dict:
    calls = F.read_calls(capture)
    assert [c.name for c in calls] == ["kexec_load"], f"{capture}: expected one kexec_load, got {calls}"
    payload = ctx.kernel[((ctx.kernel[0x1F1] or 4) + 1) * 512:]
    return F.load_facts(calls[0], kernel_payload=payload,
                        initrd=INITRD_BYTES if any(INITRD in a for a in ctx.args) else None,
                        user_cmdline=user_cmdline, word_size=4 if ctx.arch == "i386" else 8)


class Harness:
    """Per architecture (made on first use): Debian's kexec, the capture library, the kernel."""

    def __init__(self, work: Path):
        self.work = work
        self.initrd = work / "initrd.img"
        self.initrd.write_bytes(INITRD_BYTES)
        self.arches: dict = {}
        self.runs: dict = {}

    def arch(self, arch: str):
        if arch not in self.arches:
            from tests.guest.fetch import fetch
            self.arches[arch] = (R.reference_kexec(arch), R.build_capture_library(self.work, arch),
                                 fetch(arch).kernel)
        return self.arches[arch]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("differential"))


def compare(harness: Harness, arch: str, fixture: Path, case: str):
    """Run both programs (once per fixture and case) and return (ctx, theirs, ours, runs)."""
    key = (fixture.name, case)
    if key not in harness.runs:
        ref, lib, kernel = harness.arch(arch)
        args = [a.replace(KERNEL, str(kernel)).replace(INITRD, str(harness.initrd)) for a in CASES[case]]
        runs = R.run_both(ref, lib, fixture, args, harness.work / fixture.name / case)
        ctx = Ctx(arch, case, CASES[case], fixture, kernel.read_bytes())
        for run in runs:
            assert run.returncode == 0, f"{run.out}: exit {run.returncode}: {run.stderr[-2000:]}"
        user = next((a.split("=", 1)[1] for a in CASES[case] if a.startswith("--append=")), "")
        harness.runs[key] = (ctx, _facts(runs[0].out, ctx, user), _facts(runs[1].out, ctx, user), runs)
    return harness.runs[key]


def test_captured_fixtures_exist():
    for arch in ("x86_64", "i386"):
        assert any(a == arch for a, _ in FIXTURES), f"no captured {arch} snapshot (with proc/kcore) under {SYSTEMS}"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("arch,fixture", [pytest.param(a, p, id=p.name) for a, p in FIXTURES])
def test_same_load_as_kexec_tools(harness, arch, fixture, case):
    ctx, original, ours, _ = compare(harness, arch, fixture, case)
    F.assert_same_but_intended(original, ours, ctx, INTENDED)


FILE_CASES = {
    "p-s": ["-p", "-s", KERNEL, f"--initrd={INITRD}", "--append=console=ttyS0 irqpoll nr_cpus=1"],
    "l-s": ["-l", "-s", KERNEL, "--reuse-cmdline"],
}


@pytest.mark.parametrize("case", list(FILE_CASES))
@pytest.mark.parametrize("fixture", [p for a, p in FIXTURES if a == "x86_64"], ids=lambda p: p.name)
def test_same_kexec_file_load_as_kexec_tools(harness, fixture, case):
    """kexec_file_load: the same flags, command line bytes, kernel and initrd files."""
    ref, lib, kernel = harness.arch("x86_64")
    args = [a.replace(KERNEL, str(kernel)).replace(INITRD, str(harness.initrd)) for a in FILE_CASES[case]]
    runs = R.run_both(ref, lib, fixture, args, harness.work / fixture.name / case)
    got = []
    for run in runs:
        assert run.returncode == 0, f"{run.out}: exit {run.returncode}: {run.stderr[-2000:]}"
        calls = F.read_calls(run.out)
        assert [c.name for c in calls] == ["kexec_file_load"], f"{run.out}: {calls}"
        got.append(F.file_load_facts(run.out, calls[0]))
    theirs, ours = got
    assert theirs["kernel_sha256"] == hashlib.sha256(kernel.read_bytes()).hexdigest()
    assert (theirs["initrd_sha256"] is None) == ("--initrd" not in " ".join(args))
    differences = F.diff(theirs, ours)
    assert not differences, f"kexec-py's kexec_file_load differs from kexec-tools 2.0.25: {differences}"


def test_core_header_and_backup_are_compared(harness):
    """The facts that matter most are present (so their equality above means something)."""
    ctx, theirs, ours, _ = compare(harness, *FIXTURES[0], "p")
    for side in (theirs, ours):
        assert side["core.class"] == 64 and side["core.type_machine"] == (4, 62)
        assert len(side["core.notes"]) >= 2 and len(side["core.loads"]) >= 3     # CPUs + vmcoreinfo; text + RAM
        assert side["backup"] and side["backup.segment_holds_it"] and side["backup.purgatory_knows_dst_and_size"]
        assert F.elfcorehdr_arg(side["cmdline"]) == side["segment.elfcorehdr"][0]


def _tampered(capture: Path, dest: Path, edit) -> Path:
    shutil.copytree(capture, dest)
    edit(dest)
    return dest


def _elfcorehdr_index(capture: Path) -> int:
    for i, _ in enumerate((capture / "0.segments.txt").read_text().split("\n")[:-1]):
        if (capture / f"0.seg-{i}.bin").read_bytes()[:4] == b"\x7fELF":
            return i
    raise AssertionError("no elfcorehdr segment")


def test_a_dropped_pt_load_is_caught(harness, tmp_path):
    ctx, theirs, _, runs = compare(harness, *FIXTURES[0], "p")

    def drop_last_phdr(d: Path):
        seg = d / f"0.seg-{_elfcorehdr_index(d)}.bin"
        buf = bytearray(seg.read_bytes())
        buf[56:58] = (int.from_bytes(buf[56:58], "little") - 1).to_bytes(2, "little")   # e_phnum
        seg.write_bytes(bytes(buf))

    broken = _facts(_tampered(runs[1].out, tmp_path / "ours", drop_last_phdr), ctx, "console=ttyS0 irqpoll nr_cpus=1")
    assert "core.loads" in F.diff(theirs, broken)


def test_a_moved_elfcorehdr_is_caught(harness, tmp_path):
    ctx, _, _, runs = compare(harness, *FIXTURES[0], "p")

    def move(d: Path):
        rows = (d / "0.segments.txt").read_text().split("\n")
        i = _elfcorehdr_index(d)
        mem, memsz, bufsz = rows[i].split()
        rows[i] = f"{int(mem, 16) - 0x1000:#x} {memsz} {bufsz}"
        (d / "0.segments.txt").write_text("\n".join(rows))

    with pytest.raises(F.CaptureError, match="elfcorehdr="):
        _facts(_tampered(runs[1].out, tmp_path / "ours", move), ctx, "")


def test_every_intended_difference_is_documented():
    text = DOCS.read_text()
    missing = [name for name in INTENDED if f"`{name}`" not in text]
    assert not missing, f"{DOCS} does not list {missing}"
