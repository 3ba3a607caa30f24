"""The ppc64le kdump plan on the captured pseries snapshot (tests/fixtures/systems/ppc64le-qemu-2cpu).

Expected values come from elsewhere than the planner: the fixture's own property files
(crash region, RTAS, memory nodes), dtc's reading of the device tree we build, pyelftools'
reading of the ELF core header and of the vmlinux, and kexec-tools 2.0.25's command line
on the same guest (``elfcorehdr=565824K``, next-arches-facts.md).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kexec_py import preflight
from kexec_py.arch.base import LoadInputs
from kexec_py.plan.purgatory import load_purgatory, sha256_of_segments
from kexec_py.plan.ranges import Range
from kexec_py.structs import kexec_uapi as K
from kexec_py.system.view import SystemView
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/fixtures/systems/ppc64le-qemu-2cpu"
DT = FIXTURE / "proc/device-tree"
APPEND = "console=hvc0 irqpoll nr_cpus=1 reset_devices panic=-1"
KiB64 = 64 << 10


def be(rel: str) -> int:
    return int.from_bytes((DT / rel).read_bytes(), "big")


CRASH = (be("chosen/linux,crashkernel-base"), be("chosen/linux,crashkernel-size"))
RTAS = (be("rtas/linux,rtas-base"), be("rtas/rtas-size"))


@pytest.fixture(scope="module")
def arch():
    from kexec_py.arch.ppc64le import Ppc64le
    return Ppc64le()


@pytest.fixture(scope="module")
def kernel_path() -> Path:
    """Debian's ppc64el vmlinux (fetched into the cache on first use; fails if it cannot be)."""
    from tests.guest.fetch import fetch
    return fetch("ppc64le").kernel


@pytest.fixture(scope="module")
def kernel(arch, kernel_path):
    from kexec_py.image.open import parse_kernel, read_kernel_file
    return parse_kernel(read_kernel_file(kernel_path), arch.formats)


@pytest.fixture(scope="module")
def plan(arch, kernel):
    view = SystemView(FIXTURE)
    facts = arch.read_crash_facts(view)
    inputs = LoadInputs(cmdline=APPEND, initrd=b"\x5a" * 300000, page_size=view.page_size)
    return arch.plan_crash(kernel, inputs, facts, load_purgatory("ppc64le"))


def seg(plan, name):
    (s,) = [s for s in plan.segments if s.name == name]
    return s


def dts(dtb: bytes) -> str:
    assert shutil.which("dtc"), "dtc is needed (apt-get install device-tree-compiler)"
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts"], input=dtb, capture_output=True,
                          check=True).stdout.decode()


def test_the_fixture_page_size_is_64k():
    assert SystemView(FIXTURE).page_size == KiB64


def test_crash_region_comes_from_chosen():
    assert SystemView(FIXTURE).crash_regions()[0].start == CRASH[0]
    assert SystemView(FIXTURE).crash_regions()[0].size == CRASH[1]


def test_vmlinux_is_read_as_elfutils_sees_it(kernel, kernel_path):
    from elftools.elf.elffile import ELFFile
    with open(kernel_path, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == "EM_PPC64" and elf.little_endian
        first = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
        assert (kernel.offset, kernel.filesz, kernel.memsz) == (first["p_offset"], first["p_filesz"], first["p_memsz"])
        assert kernel.entry == elf["e_entry"] - first["p_vaddr"]


def test_every_segment_is_in_the_crash_region_64k_aligned_and_off_rtas(plan, arch):
    lo, hi = CRASH[0], CRASH[0] + CRASH[1]
    for s in plan.segments:
        assert lo <= s.mem and s.mem + s.memsz <= hi, s
        assert s.mem % KiB64 == 0 and s.memsz % KiB64 == 0, s
        assert not (s.mem < RTAS[0] + RTAS[1] and RTAS[0] < s.mem + s.memsz), f"{s} is on RTAS"
    assert plan.flags == K.KEXEC_ON_CRASH | K.KEXEC_ARCH_PPC64
    preflight.check_plan(plan, arch, ram_total=preflight.ram_total(SystemView(FIXTURE)))


def test_kernel_runs_where_loaded_at_the_crash_base(plan, kernel, kernel_path):
    head = seg(plan, "kernel")
    assert head.mem == CRASH[0]
    data = kernel_path.read_bytes()
    image = data[kernel.offset:kernel.offset + kernel.filesz]
    assert int.from_bytes(image[0x5c:0x60], "little") == 0x72756E30            # "run0" in the file
    assert int.from_bytes(bytes(head.buf[0x5c:0x60]), "little") == 1           # run at load
    assert bytes(head.buf[:0x5c]) == image[:0x5c] and bytes(head.buf[0x60:]) == image[0x60:KiB64]
    rest = seg(plan, "kernel (rest)")
    assert bytes(rest.buf) == image[KiB64:] and rest.mem + rest.memsz >= CRASH[0] + kernel.memsz


def test_cmdline_has_elfcorehdr_in_kib_as_kexec_tools_on_the_same_guest(plan):
    assert plan.cmdline == f"{APPEND} elfcorehdr={seg(plan, 'elfcorehdr').mem >> 10}K"
    assert plan.cmdline.endswith("elfcorehdr=565824K")     # kexec-tools 2.0.25 printed this on this guest


def test_elf_core_header_read_by_pyelftools(plan):
    from elftools.elf.elffile import ELFFile
    core = ELFFile(io.BytesIO(bytes(seg(plan, "elfcorehdr").buf)))
    assert core["e_type"] == "ET_CORE" and core["e_machine"] == "EM_PPC64" and core.little_endian
    loads = [s for s in core.iter_segments() if s["p_type"] == "PT_LOAD"]
    notes = [s for s in core.iter_segments() if s["p_type"] == "PT_NOTE"]
    cpus = sorted(p.name for p in (FIXTURE / "sys/devices/system/cpu").glob("cpu[0-9]*/crash_notes"))
    vmcoreinfo = int((FIXTURE / "sys/kernel/vmcoreinfo").read_text().split()[0], 16)
    assert len(notes) == len(list((FIXTURE / "sys/devices/system/cpu").glob("cpu[0-9]*/crash_notes"))) + 1
    assert notes[-1]["p_paddr"] == vmcoreinfo and cpus
    backup = seg(plan, "backup")
    first = loads[0]
    assert (first["p_paddr"], first["p_memsz"], first["p_offset"]) == (0, KiB64, backup.mem)
    assert first["p_vaddr"] == 0xC000000000000000
    for load in loads:
        assert load["p_vaddr"] == load["p_paddr"] + 0xC000000000000000
        if load is not first:
            assert load["p_offset"] == load["p_paddr"]
    spans = [(l["p_paddr"], l["p_paddr"] + l["p_memsz"]) for l in loads]
    ram_end = max(a + s for n in DT.glob("memory@*") for a, s in _reg(n / "reg"))
    assert spans[-1][1] == ram_end
    # outside the crash region, except firmware memory inside it (RTAS), which is dumped
    for a, b in spans:
        inside = a < CRASH[0] + CRASH[1] and CRASH[0] < b
        assert not inside or (a, b) == (RTAS[0], RTAS[0] + RTAS[1])


def _reg(path: Path):
    raw = path.read_bytes()
    return [(int.from_bytes(raw[i:i + 8], "big"), int.from_bytes(raw[i + 8:i + 16], "big"))
            for i in range(0, len(raw), 16)]


def test_capture_device_tree_as_dtc_reads_it(plan):
    dtb = seg(plan, "dtb")
    text = dts(bytes(dtb.buf))
    initrd = seg(plan, "initrd")
    assert re.search(r'bootargs = "' + re.escape(plan.cmdline) + '"', text)
    assert f"linux,initrd-start = <0x00 {initrd.mem:#x}>" in text
    assert f"linux,initrd-end = <0x00 {initrd.mem + 300000:#x}>" in text
    assert "linux,crashkernel-base" not in text and "linux,crashkernel-size" not in text
    usable = re.findall(r"memory@(\w+) \{[^}]*?linux,usable-memory = <([^>]*)>", text, re.S)
    assert dict(usable) == {"0": f"0x00 0x00 0x00 {CRASH[0] + CRASH[1]:#x}", "40000000": "0x00 0x00 0x00 0x00"}
    reserves = [(int(a, 16), int(s, 16)) for a, s in re.findall(r"/memreserve/\s+(0x\w+) (0x\w+);", text)]
    def reserved(start, size):
        return any(a <= start and start + size <= a + s for a, s in reserves)
    assert reserved(*RTAS) and reserved(dtb.mem, len(dtb.buf)) and reserved(initrd.mem, 300000)
    assert reserved(seg(plan, "elfcorehdr").mem, KiB64) and reserved(seg(plan, "backup").mem, KiB64)
    assert reserved(KiB64, CRASH[0] - KiB64)                  # the dead kernel's memory stays put
    assert not reserved(seg(plan, "kernel").mem, KiB64)


def test_purgatory_is_told_everything(plan, kernel, kernel_path):
    from kexec_py.arch.relocs_ppc64le import LINKER_SYMBOLS  # noqa: F401 (the object links with it)
    purg = seg(plan, "purgatory")
    linked = load_purgatory("ppc64le").link(purg.mem)
    buf = bytes(purg.buf)

    def get(name, size=8):
        at = linked.symbol_addr(name) - purg.mem
        return int.from_bytes(buf[at:at + size], "little")
    assert plan.entry == purg.mem
    assert get("kernel_entry") == seg(plan, "kernel").mem and get("kernel_dtb") == seg(plan, "dtb").mem
    assert (get("backup_start"), get("backup_src"), get("backup_size")) == (seg(plan, "backup").mem, 0, KiB64)
    data = kernel_path.read_bytes()[kernel.offset:kernel.offset + 0x100]
    assert buf[4:0x100] == data[4:0x100]                       # the kernel's secondary hold code
    assert get("kernel_word0", 4) == int.from_bytes(data[:4], "little")
    regions, digest = sha256_of_segments([s for s in plan.segments if s.name != "purgatory"])
    at = linked.symbol_addr("sha256_digest") - purg.mem
    assert buf[at:at + 32] == digest


def test_dry_run_through_the_cli(tmp_path, kernel_path):
    out = subprocess.run(
        [sys.executable, "-m", "kexec_py", "--root", str(FIXTURE), "--arch", "ppc64le", "-p", "-c", "--dry-run",
         str(kernel_path), f"--append={APPEND}"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "elfcorehdr=565824K" in out.stdout and "KEXEC_ON_CRASH" in out.stdout


def test_an_unproven_arch_plans_only_with_dry_run(monkeypatch):
    """The registry's dry_run_only: an Arch that plans but has not loaded a kernel in a guest
    yet is reachable for --dry-run only (how ppc64le was added, before its guest proof)."""
    from kexec_py import arch as arches
    from kexec_py.errors import UsageError
    monkeypatch.setitem(arches.REGISTRY, "ppc64le-next", arches.Entry(
        "ppc64le-next", (), unsupported="not proven yet", dry_run_only="kexec_py.arch.ppc64le:Ppc64le"))
    with pytest.raises(UsageError, match="not proven yet"):
        arches.get("ppc64le-next")
    assert arches.get("ppc64le-next", dry_run=True).name == "ppc64le"
    assert arches.get("ppc64le").elf_machine == "EM_PPC64"          # proven: registered for real loads


def test_the_purgatory_links_calls_to_local_entries_and_data_from_the_toc():
    """What the ELFv2 linking gives, read back with objdump's disassembly of the linked bytes."""
    tool = require_tool("powerpc64le-linux-gnu-objdump", "binutils-powerpc64le-linux-gnu")
    base = 0x20280000
    linked = load_purgatory("ppc64le").link(base)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ppc64le-purgatory-{os.getpid()}.bin"
    path.write_bytes(bytes(linked.buf))
    try:
        text = subprocess.run([tool, "-D", "-b", "binary", "-m", "powerpc:common64", "-EL",
                               f"--adjust-vma={base:#x}", str(path)], capture_output=True, text=True,
                              check=True).stdout
    finally:
        path.unlink()
    main = linked.symbol_addr("purgatory_main")
    assert re.search(rf"\bbl\s+0x{main + 8:x}\b", text), "entry.S must call purgatory_main's local entry"


def test_reboot_load_stays_above_the_running_kernel_and_the_new_kernels_copy(arch, kernel):
    """The running kernel refuses (ETXTBSY) any -l segment below its end, which /chosen's
    linux,kernel-end gives; the new kernel copies itself to 0 before it runs, over its memsz."""
    view = SystemView(FIXTURE)
    plan = arch.plan_load(kernel, LoadInputs(cmdline=APPEND, initrd=b"\x5a" * 300000, page_size=view.page_size),
                          arch.read_load_facts(view), load_purgatory("ppc64le"))
    floor = max(be("chosen/linux,kernel-end"), kernel.memsz)
    assert all(s.mem >= floor and s.mem % KiB64 == 0 for s in plan.segments), plan.segments
    assert not any(s.range.overlaps(Range.sized(*RTAS)) for s in plan.segments)
    preflight.check_plan(plan, arch)


def test_a_locked_down_kernel_takes_an_appended_signature(arch, kernel_path):
    """ppc64le kernels are signed the way modules are: a PKCS#7 blob, its module_signature
    trailer and the marker appended. Debian's own signed ppc64el modules are such files."""
    from tests.guest.fetch import fetch
    module = next((fetch("ppc64le").root / "lib/modules").rglob("af_key.ko"))
    signed = module.read_bytes()
    assert arch.signed(signed)
    assert not arch.signed(signed[:-1]) and not arch.signed(kernel_path.read_bytes()[:1 << 20])
    assert not arch.signed(b"")


def test_hot_pluggable_memory_from_both_property_versions():
    """ibm,dynamic-memory (one LMB an entry) and -v2 (runs of LMBs), packed here by hand from
    PAPR's layout: assigned, unreserved LMBs are RAM; others are not."""
    import struct

    from kexec_py.arch.ppc64le import lmbs
    from kexec_py.plan.devicetree import DeviceTree, Node
    lmb = 256 << 20

    def tree(name: str, value: bytes) -> DeviceTree:
        node = Node("ibm,dynamic-reconfiguration-memory",
                    props={"ibm,lmb-size": lmb.to_bytes(8, "big"), name: value})
        return DeviceTree(Node("", children=[node]), [], 0)
    v1 = struct.pack(">I", 3) + b"".join(struct.pack(">QIIII", base, 0x80000000 + i, 0, 0, flags)
                                         for i, (base, flags) in enumerate([(1 << 30, 0x8), (5 << 28, 0x0),
                                                                            (6 << 28, 0x88)]))
    assert lmbs(tree("ibm,dynamic-memory", v1)) == [(Range.sized(1 << 30, lmb), True),
                                                   (Range.sized(5 << 28, lmb), False),
                                                   (Range.sized(6 << 28, lmb), False)]
    v2 = struct.pack(">I", 2) + struct.pack(">IQIII", 2, 1 << 30, 0x80000000, 0, 0x8) \
        + struct.pack(">IQIII", 1, 3 << 30, 0x80000002, 0, 0x0)
    assert lmbs(tree("ibm,dynamic-memory-v2", v2)) == [(Range.sized(1 << 30, lmb), True),
                                                      (Range.sized((1 << 30) + lmb, lmb), True),
                                                      (Range.sized(3 << 30, lmb), False)]


# -- the real-mode area ------------------------------------------------------------------
# PAPR: the first memory block (memory@0's first reg range) is the real-mode area, the only
# memory an LPAR reaches with the MMU off. The purgatory (and its stack), the backup copy it
# writes and the device tree the new kernel reads first must lie below its end.

RMA_END = int.from_bytes((DT / "memory@0" / "reg").read_bytes()[8:16], "big")   # base 0, u64 size
REAL_MODE = ("purgatory", "backup", "dtb")


def _snapshot_with_crash(tmp_path: Path, base: int, size: int) -> SystemView:
    root = tmp_path / "snap"
    shutil.copytree(FIXTURE, root, symlinks=True)
    chosen = root / "proc/device-tree/chosen"
    (chosen / "linux,crashkernel-base").write_bytes(base.to_bytes(8, "big"))
    (chosen / "linux,crashkernel-size").write_bytes(size.to_bytes(8, "big"))
    return SystemView(root)


def test_the_real_mode_area_is_memory_at_0s_first_range(arch):
    assert RMA_END == 0x40000000                              # QEMU pseries: 1 GiB
    assert arch.read_crash_facts(SystemView(FIXTURE)).rma_end == RMA_END


def test_what_runs_with_the_mmu_off_stays_below_the_real_mode_area(arch, kernel, tmp_path):
    """A crash region that runs past the RMA (crashkernel=512M@768M here: 0x30000000-0x4fffffff;
    the RAM goes on to 0x5fffffff): the device tree, placed top-down, went to its top before."""
    base, size = 0x30000000, 0x20000000
    view = _snapshot_with_crash(tmp_path, base, size)
    facts = arch.read_crash_facts(view)
    plan = arch.plan_crash(kernel, LoadInputs(cmdline=APPEND, initrd=b"\x5a" * 300000, page_size=view.page_size),
                           facts, load_purgatory("ppc64le"))
    for name in REAL_MODE:
        assert seg(plan, name).range.end <= RMA_END, (name, seg(plan, name))
    assert all(s.range.start >= base and s.range.end <= base + size for s in plan.segments)
    preflight.check_plan(plan, arch)
    # and the -l plan too (its free memory runs to the top of RAM)
    load = arch.plan_load(kernel, LoadInputs(cmdline=APPEND, initrd=b"\x5a" * 300000, page_size=view.page_size),
                          arch.read_load_facts(view), load_purgatory("ppc64le"))
    for name in ("purgatory", "dtb"):
        assert seg(load, name).range.end <= RMA_END, (name, seg(load, name))


def test_a_crash_region_above_the_real_mode_area_is_refused_with_the_reason(arch, kernel, tmp_path, capsys):
    from kexec_py.errors import NoSpace
    view = _snapshot_with_crash(tmp_path, 0x40000000, 0x10000000)
    with pytest.raises(NoSpace, match="real-mode area") as e:
        arch.plan_crash(kernel, LoadInputs(cmdline=APPEND, initrd=None, page_size=view.page_size),
                        arch.read_crash_facts(view), load_purgatory("ppc64le"))
    assert "crashkernel=" in e.value.hint
