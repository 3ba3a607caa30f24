"""kexec-py against Debian's kexec-tools 2.0.25 on the captured ppc64le snapshot:
``kexec -p`` of Debian's ppc64el vmlinux, segment by segment.

The host is x86_64, so Debian's ppc64el kexec runs under qemu-user (qemu-ppc64le -L
its root), in a private namespace with the snapshot over /proc and /sys, and with
capture.c cross-compiled and preloaded: it records the kexec_load, and reports the
snapshot's own page size (64 KiB, AT_PAGESZ in its proc/self/auxv) to getpagesize(),
since qemu-user would show the host's 4 KiB (tests/differential/run.py). kexec-py runs
with its recording backend. Both loads become facts (tests/differential/ppc64_facts.py,
which parses the ELF core header and the DTB from the published layouts): the crash
memory (the core header's PT_LOADs), the capture kernel's usable memory
(linux,usable-memory), the backup's source and destination, elfcorehdr= on the
command line, the reservation block, every other property of the device tree and
where each segment lies. Every fact must be equal, except where a difference is
INTENDED: each entry says why (docs/differences.md says the same), undoes exactly
that difference on kexec-tools' side, and must show where it is expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import SYSTEMS
from tests.differential import facts as F
from tests.differential import ppc64_facts as P
from tests.differential import run as R

ARCH = "ppc64le"
FIXTURES = [p for p in sorted(SYSTEMS.glob(f"{ARCH}-*"))
            if (p / "proc/device-tree/chosen/linux,crashkernel-base").exists()]

KERNEL, INITRD = "@KERNEL", "@INITRD"
CASES = {
    "p": ["-p", "-c", KERNEL, f"--initrd={INITRD}", "--append=console=hvc0 irqpoll nr_cpus=1"],
    "p-no-initrd": ["-p", "-c", KERNEL, "--append=console=hvc0 irqpoll"],
}
INITRD_BYTES = bytes(range(256)) * (3 * 4096 + 7)          # 3 MiB and a bit: not a page multiple
DOCS = Path(__file__).parent.parent / "docs" / "differences.md"
KEXEC_TOOLS_RMO_CAP = 0x30000000      # kexec-tools 2.0.25 caps the real-mode area's top at 768 MiB


@dataclass(frozen=True)
class Ctx:
    case: str
    args: list[str]
    fixture: Path
    image: bytes                        # the vmlinux's first PT_LOAD

    def dt(self, path: str) -> bytes | None:
        f = self.fixture / "proc/device-tree" / path
        return f.read_bytes() if f.exists() else None

    def dt_int(self, path: str) -> int | None:
        raw = self.dt(path)
        return int.from_bytes(raw, "big") if raw else None

    @property
    def crash_end(self) -> int:
        return self.dt_int("chosen/linux,crashkernel-base") + self.dt_int("chosen/linux,crashkernel-size")

    @property
    def rtas(self) -> tuple[int, int] | None:
        base, size = self.dt_int("rtas/linux,rtas-base"), self.dt_int("rtas/rtas-size")
        return (base, size) if base is not None and size else None


@dataclass(frozen=True)
class Intended:
    reason: str
    expected: Callable[[Ctx, dict], bool]             # (ctx, theirs) -> must this difference show?
    undo: Callable[[dict, dict, Ctx], dict | None]    # (theirs, ours, ctx) -> theirs without it, or None


def _run_at_load(theirs, ours, ctx):
    original = int.from_bytes(ctx.image[P.RUN_AT_LOAD:P.RUN_AT_LOAD + 4], "little")
    if theirs["kernel.run_at_load_word"] != original or ours["kernel.run_at_load_word"] != 1:
        return None
    return {**theirs, "kernel.run_at_load_word": 1}


def _cmdline_space(theirs, ours, ctx):
    if theirs["cmdline"] != ours["cmdline"] + " ":
        return None
    return {**theirs, "cmdline": ours["cmdline"], "prop./chosen:bootargs": ours["prop./chosen:bootargs"]}


def _rtas_exact(theirs, ours, ctx):
    if ctx.rtas is None:
        return None
    base, size = ctx.rtas
    page = -(-size // 0x10000) * 0x10000
    loads = theirs["core.loads"]
    hit = [ld for ld in loads if ld[2] == base and ld[3] == ld[4] == page]
    if not hit or page == size or any(ld[2] == base and ld[3] == page for ld in ours["core.loads"]):
        return None
    fixed = tuple((*ld[:3], size, size, *ld[5:]) if ld is hit[0] else ld for ld in loads)
    return {**theirs, "core.loads": fixed}


def _sorted_merged_loads(theirs, ours, ctx):
    """theirs' PT_LOADs sorted by address (the backup's first), contiguous ones made one."""
    loads = sorted(theirs["core.loads"], key=lambda ld: (ld[0] == ld[2], ld[2]))
    merged: list[tuple] = []
    for ld in loads:
        if merged:
            off, vaddr, paddr, filesz, memsz, flags, align = merged[-1]
            if ld[2] == paddr + memsz and ld[1] == vaddr + memsz and ld[0] == off + filesz and ld[5:] == (flags, align):
                merged[-1] = (off, vaddr, paddr, filesz + ld[3], memsz + ld[4], flags, align)
                continue
        merged.append(ld)
    if tuple(merged) == theirs["core.loads"] or tuple(merged) != ours["core.loads"]:
        return None
    return {**theirs, "core.loads": tuple(merged), "core.phdr_order": ours["core.phdr_order"]}


def _dtb_placement(theirs, ours, ctx):
    t, o = theirs["segment.dtb"], ours["segment.dtb"]
    if t == o or t[0] + t[1] > KEXEC_TOOLS_RMO_CAP or o[0] + o[1] != ctx.crash_end:
        return None
    # the reservation of theirs' tree is moved with it (the next entry compares the rest)
    reserved = [r for r in theirs["dtb.reserved_memory"] if not (t[0] <= r[0] and sum(r) <= sum(t))]
    return {**theirs, "segment.dtb": o, "dtb.reserved_memory": P.merged([*reserved, o])}


def _covers(ranges, start, end) -> bool:
    """Is [start, end) inside the union of the (start, size) ``ranges`` (merged)?"""
    return any(s <= start and end <= s + n for s, n in ranges)


def _whole_segments(theirs, ours, ctx):
    t, o = theirs["dtb.reserved_memory"], ours["dtb.reserved_memory"]
    if t == o:
        return None
    segments = [v for k, v in ours.items() if k.startswith("segment.") and isinstance(v, tuple) and k != "segment.kernel"]
    # everything theirs reserves, ours reserves; what ours reserves besides lies in its own segments
    if not all(_covers(o, s, s + n) for s, n in t):
        return None
    for s, n in o:
        at = s
        while at < s + n:
            inside_t = next((ts + tn for ts, tn in t if ts <= at < ts + tn), None)
            inside_seg = next((ss + sn for ss, sn in segments if ss <= at < ss + sn), None)
            if inside_t is None and inside_seg is None:
                return None
            at = max(x for x in (inside_t, inside_seg) if x is not None)
    return {**theirs, "dtb.reserved_memory": o}


def _last_comp_version(theirs, ours, ctx):
    if theirs["dtb.version"] != (17, 17) or ours["dtb.version"] != (17, 16):
        return None
    return {**theirs, "dtb.version": ours["dtb.version"]}


def _memory_limit(theirs, ours, ctx):
    key = "prop./chosen:linux,memory-limit"
    if key not in theirs or key in ours or int.from_bytes(theirs[key], "big") != 0:
        return None
    return {k: v for k, v in theirs.items() if k != key}


INTENDED = {
    "ppc64-run-at-load-in-image": Intended(
        "ppc64 -p: kexec-py writes __run_at_load = 1 into the loaded kernel image itself; kexec-tools "
        "loads the image unchanged and its purgatory writes the word before entering the kernel. "
        "Either way the capture kernel runs where it is loaded",
        lambda ctx, t: True, _run_at_load),
    "ppc64-cmdline-trailing-space": Intended(
        "ppc64 -p: kexec-tools 2.0.25 appends \"elfcorehdr=<n>K \" with a trailing space to the "
        "command line (/chosen bootargs); kexec-py adds the same word without it",
        lambda ctx, t: True, _cmdline_space),
    "ppc64-rtas-exact-size": Intended(
        "ppc64 ELF core header: the PT_LOAD for RTAS inside the crash region is RTAS's own size "
        "(/rtas rtas-size), as the kernel's own kexec_file_load gives it; kexec-tools rounds it up "
        "to a page and so dumps the capture kernel's memory behind it too",
        lambda ctx, t: ctx.rtas is not None and ctx.rtas[1] % 0x10000 != 0, _rtas_exact),
    "ppc64-dump-ranges-sorted-merged": Intended(
        "ppc64 ELF core header: kexec-py lists the dumped RAM sorted by address, ranges that touch "
        "(memory@0's tail above the crash region and memory@40000000) as one PT_LOAD; kexec-tools "
        "lists them in the device tree's directory order, one per memory node piece. The memory "
        "described is the same",
        lambda ctx, t: True, _sorted_merged_loads),
    "ppc64-dtb-top-of-crash-region": Intended(
        "ppc64 -p: kexec-py puts the device tree at the top of the crash region (here inside the "
        "real-mode area, memory@0, too); kexec-tools 2.0.25 puts it top-down below min(RMA top, "
        "768 MiB), a cap it keeps for old kernels, so here below 0x30000000",
        lambda ctx, t: ctx.crash_end > KEXEC_TOOLS_RMO_CAP, _dtb_placement),
    "ppc64-reserve-whole-segments": Intended(
        "ppc64 reservation block: kexec-py reserves the backup, the ELF core header, the initrd and "
        "the device tree as whole segments (page-rounded, touching ones as one entry), as kexec-tools "
        "does for the ELF core header since 600c2f9; 2.0.25 reserves only each buffer's bytes",
        lambda ctx, t: True, _whole_segments),
    "ppc64-fdt-last-comp-version": Intended(
        "the DTB header's last_comp_version is 16, as the Devicetree Specification requires for a "
        "version 17 blob (and dtc writes); kexec-tools 2.0.25 writes 17",
        lambda ctx, t: True, _last_comp_version),
    "ppc64-memory-limit-not-inherited": Intended(
        "ppc64: kexec-py does not copy the running kernel's /chosen linux,memory-limit (the result "
        "of its own mem=) into the next kernel's tree, which decides by its own command line; "
        "kexec-tools copies it. On the snapshot it is 0, which means no limit, as its absence does",
        lambda ctx, t: ctx.dt("chosen/linux,memory-limit") is not None, _memory_limit),
}


def _facts(capture: Path, ctx: Ctx, user_cmdline: str) -> dict:
    calls = F.read_calls(capture)
    assert [c.name for c in calls] == ["kexec_load"], f"{capture}: expected one kexec_load, got {calls}"
    return P.crash_load_facts(calls[0], image=ctx.image,
                              initrd=INITRD_BYTES if any(INITRD in a for a in ctx.args) else None,
                              user_cmdline=user_cmdline)


def _first_load(vmlinux: Path) -> bytes:
    from elftools.elf.elffile import ELFFile
    with open(vmlinux, "rb") as f:
        load = next(s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD")
        f.seek(load["p_offset"])
        return f.read(load["p_filesz"])


class Harness:
    def __init__(self, work: Path):
        from tests.guest.fetch import fetch
        self.work = work
        self.initrd = work / "initrd.img"
        self.initrd.write_bytes(INITRD_BYTES)
        self.ref = R.reference_kexec(ARCH)
        self.lib = R.build_capture_library(work, ARCH)
        self.kernel = fetch(ARCH).kernel
        self.image = _first_load(self.kernel)
        self.runs: dict = {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("differential-ppc64le"))


def compare(harness: Harness, fixture: Path, case: str):
    key = (fixture.name, case)
    if key not in harness.runs:
        args = [a.replace(KERNEL, str(harness.kernel)).replace(INITRD, str(harness.initrd)) for a in CASES[case]]
        runs = R.run_both(harness.ref, harness.lib, fixture, args, harness.work / fixture.name / case)
        for run in runs:
            assert run.returncode == 0, f"{run.out}: exit {run.returncode}: {run.stderr[-2000:]}"
        ctx = Ctx(case, CASES[case], fixture, harness.image)
        user = next((a.split("=", 1)[1] for a in CASES[case] if a.startswith("--append=")), "")
        harness.runs[key] = (ctx, _facts(runs[0].out, ctx, user), _facts(runs[1].out, ctx, user), runs)
    return harness.runs[key]


def test_captured_fixture_exists():
    assert FIXTURES, f"no captured {ARCH} snapshot (with proc/device-tree and a crash region) under {SYSTEMS}"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_same_crash_load_as_kexec_tools(harness, fixture, case):
    ctx, original, ours, _ = compare(harness, fixture, case)
    F.assert_same_but_intended(original, ours, ctx, INTENDED)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_the_facts_that_matter_are_compared(harness, fixture):
    """Crash memory, usable memory, backup and elfcorehdr are there on both sides (so their
    equality above means something), and agree with the snapshot's device tree."""
    ctx, theirs, ours, _ = compare(harness, fixture, "p")
    crash_base = ctx.dt_int("chosen/linux,crashkernel-base")
    for side in (theirs, ours):
        assert side["core.class"] == 64 and side["core.type_machine"] == (4, 21)        # ET_CORE, EM_PPC64
        assert len(side["core.notes"]) >= 3                                              # 2 CPUs + vmcoreinfo
        # the first 64 KiB are dumped from the backup, which lies in the crash region
        src, size, dst = side["backup"]
        assert (src, size) == (0, 0x10000) and crash_base <= dst < ctx.crash_end
        assert side["backup.segment_holds_it"] and side["segment.backup"] == (dst, 0x10000)
        # no dumped range overlaps the crash region, except firmware memory inside it
        rtas = ctx.rtas
        for _, _, paddr, filesz, *_ in side["core.loads"]:
            inside = paddr < ctx.crash_end and crash_base < paddr + filesz
            assert not inside or (rtas and rtas[0] <= paddr < rtas[0] + 0x10000), hex(paddr)
        # the capture kernel may use 0 .. crash end of memory@0, nothing of the other nodes
        assert side["memory./memory@0.usable"] == ((0, ctx.crash_end),)
        assert all(u in (None, ((0, 0),)) or all(n == 0 for _, n in u)
                   for k, u in side.items() if k.endswith(".usable") and k != "memory./memory@0.usable")
        assert F.elfcorehdr_arg(side["cmdline"]) == side["segment.elfcorehdr"][0]
        assert set(side["dtb.reserves"]) == {"backup", "elfcorehdr", "initrd", "dtb"}
        assert side["chosen.initrd_is_segment"] and side["kernel.image_loaded_whole"]
        assert side["segment.kernel"][0] == crash_base


def test_a_dropped_pt_load_is_caught(harness, tmp_path):
    import shutil
    ctx, theirs, _, runs = compare(harness, FIXTURES[0], "p")
    dest = tmp_path / "ours"
    shutil.copytree(runs[1].out, dest)
    for i, _ in enumerate((dest / "0.segments.txt").read_text().split("\n")[:-1]):
        seg = dest / f"0.seg-{i}.bin"
        buf = bytearray(seg.read_bytes())
        if buf[:4] == b"\x7fELF":
            buf[56:58] = (int.from_bytes(buf[56:58], "little") - 1).to_bytes(2, "little")   # e_phnum
            seg.write_bytes(bytes(buf))
    broken = _facts(dest, ctx, "console=hvc0 irqpoll nr_cpus=1")
    assert "core.loads" in F.diff(theirs, broken)


def test_a_wrong_usable_memory_is_caught(harness, tmp_path):
    import shutil
    ctx, theirs, _, runs = compare(harness, FIXTURES[0], "p")
    dest = tmp_path / "ours"
    shutil.copytree(runs[1].out, dest)
    usable = bytes(8) + ctx.crash_end.to_bytes(8, "big")          # <0 crash_end>, 2 + 2 cells
    edited = 0
    for i, _ in enumerate((dest / "0.segments.txt").read_text().split("\n")[:-1]):
        seg = dest / f"0.seg-{i}.bin"
        buf = seg.read_bytes()
        if buf[:4] == P.FDT_MAGIC.to_bytes(4, "big") and buf.count(usable) == 1:
            seg.write_bytes(buf.replace(usable, bytes(8) + (ctx.crash_end + 0x10000).to_bytes(8, "big")))
            edited += 1
    assert edited == 1
    broken = _facts(dest, ctx, "console=hvc0 irqpoll nr_cpus=1")
    assert "memory./memory@0.usable" in F.diff(theirs, broken)


def test_every_intended_difference_is_documented():
    text = DOCS.read_text()
    missing = [name for name in INTENDED if f"`{name}`" not in text]
    assert not missing, f"{DOCS} does not list {missing}"
