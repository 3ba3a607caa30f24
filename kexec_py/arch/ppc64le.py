"""ppc64le: the ELF vmlinux, a device tree built from the live tree, our purgatory.

What differs from the other architectures, and where it comes from:

* Memory and the crash region are in the device tree, not in /proc/iomem: RAM
  in the ``memory@`` nodes (and the LMBs of ``ibm,dynamic-reconfiguration-memory``
  on machines with hot-pluggable memory), the reservation in /chosen's
  ``linux,crashkernel-base``/``-size``, which the kernel adds to the live tree
  after boot (so the live tree, not /sys/firmware/fdt, is read). Firmware
  memory the next kernel must not take: RTAS (``/rtas linux,rtas-base`` +
  ``rtas-size``), OPAL (``/ibm,opal``), the root's ``reserved-ranges``, TCE
  tables (``linux,tce-base``/``-size``), and the boot tree's reservation block.
* The kernel is the ELF vmlinux (relocatable); its first PT_LOAD is the whole
  image, loaded as one piece. A capture kernel runs where it is loaded: the
  word at offset 0x5c (``__run_at_load``, head_64.S) is set to 1 in the loaded
  bytes; otherwise the kernel copies itself down to 0.
* The capture kernel copies its exception vectors to physical 0 when it starts,
  so the first 64 KiB of RAM are copied by the purgatory into a backup segment,
  and the ELF core header's PT_LOAD for 0-64 KiB points at the copy.
* The capture kernel may use ``0 .. crash end`` (``linux,usable-memory`` on the
  memory nodes): it needs the start of RAM (the real-mode area) for its early
  allocations; the dead kernel's memory between 64 KiB and the crash region
  stays in the reservation block, with RTAS, the ELF core header, the backup,
  the initrd and the device tree itself. ``elfcorehdr=<KiB>K`` goes on its
  command line.
* The boot CPU in the device tree header is the CPU that runs the purgatory:
  the header gets a placeholder, the purgatory writes the real id.
* The old kernel's kexec_sequence copies the first 0x100 bytes of the entry
  point to physical 0 and parks the other CPUs at 0x60: the purgatory's first
  0x100 bytes carry the new kernel's own (its secondary hold loop), except the
  first word, which branches into the purgatory.

Facts from the kernel's Documentation/arch/powerpc/booting.rst and head_64.S,
and from kexec-tools' behaviour as /work/shared/reference/kexec-tools-facts.md
describes it (§3.5, §4.2-4.6, §5.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kexec_py.arch.base import FileInputs, LoadInputs, not_taken
from kexec_py.errors import CorruptImage, NoCrashMemory, SnapshotError, UnsupportedImage
from kexec_py.image.open import ImageFormat
from kexec_py.image.vmlinux import looks_like_elf
from kexec_py.plan.devicetree import DeviceTree, Node, build_dtb, parse_dtb, set_boot_chosen
from kexec_py.plan.elf_core import Backup, CoreHeaderSpec, build_elf_core_header
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.plan.ranges import KiB, MiB, Range, align_up, merge, subtract
from kexec_py.structs import kexec_uapi as K
from kexec_py.system.view import SystemView

EM_PPC64 = 21
PAGE_OFFSET = 0xC000_0000_0000_0000     # the linear map: vaddr = paddr + PAGE_OFFSET
BACKUP_SIZE = 64 * KiB                  # the start of RAM the capture kernel overwrites
RUN_AT_LOAD_OFFSET = 0x5C               # head_64.S __run_at_load: 1 = run where loaded
HEAD_BYTES = 0x100                      # what kexec_sequence copies from the entry point to 0
COMMAND_LINE_SIZE = 2048                # the kernel's limit, NUL included
MAX_DTB_SIZE = 1 * MiB                  # the kernel's early code reads it in place: keep it small
BOOT_CPU_PLACEHOLDER = 0                # the purgatory writes the real boot CPU

# /chosen properties the running kernel added for itself, which the next must not inherit
STALE_CHOSEN = ("linux,crashkernel-base", "linux,crashkernel-size", "linux,kernel-end",
                "linux,memory-limit", "linux,htab-base", "linux,htab-size", "linux,initrd-start",
                "linux,initrd-end", "linux,booted-from-kexec", "linux,elfcorehdr",
                "linux,usable-memory-range")


# -- the kernel ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ppc64Vmlinux:
    path: str
    data: object                        # the file's bytes (mapped)
    offset: int                         # the image: the first PT_LOAD's file bytes
    filesz: int
    memsz: int                          # bytes it occupies once running (bss included)
    entry: int                          # entry point, from the start of the image

    format = "vmlinux"

    @property
    def image(self) -> memoryview:
        return memoryview(self.data)[self.offset:self.offset + self.filesz]


def parse_ppc64_vmlinux(data, *, path: str) -> Ppc64Vmlinux:
    """A ppc64le ELF kernel: its first PT_LOAD (the whole kernel, linked at
    PAGE_OFFSET with paddr 0) and the entry point inside it."""
    from kexec_py.image.vmlinux import check_loads, elf_loads, open_elf_kernel

    elf = open_elf_kernel(data, path=path, machine=EM_PPC64, machine_name="ppc64le",
                          types=("ET_EXEC", "ET_DYN"))
    loads, is_linux = elf_loads(elf, data, path)
    check_loads(loads, len(data), path, by="vaddr", limit=None)
    first = min(loads, key=lambda s: s.vaddr)
    entry = elf.header.e_entry - first.vaddr
    if not 0 <= entry < first.filesz:
        raise CorruptImage(f"{path}: the entry point {elf.header.e_entry:#x} is not in the first PT_LOAD "
                           f"({first.vaddr:#x}+{first.filesz:#x})")
    if first.filesz < HEAD_BYTES:
        raise CorruptImage(f"{path}: the kernel image is only {first.filesz} bytes")
    if not is_linux:
        raise UnsupportedImage(f"{path} is a ppc64 ELF file without a Linux note: not a Linux kernel",
                               "give the vmlinux of a Linux kernel")
    return Ppc64Vmlinux(path=path, data=data, offset=first.offset, filesz=first.filesz,
                        memsz=first.memsz, entry=entry)


# -- facts -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ppc64Facts:
    tree: bytes                              # the live tree, flattened (placeholder boot CPU)
    ram: tuple[Range, ...]                   # RAM, from the memory nodes and LMBs
    firmware: tuple[Range, ...] = ()         # RTAS, OPAL, reserved-ranges, TCE tables
    boot_reservations: tuple[Range, ...] = ()  # the boot tree's reservation block
    crash: Range | None = None
    notes: tuple[tuple[int, int], ...] = ()  # crash notes, then vmcoreinfo: (paddr, size)
    page_offset: int = PAGE_OFFSET
    sources: tuple[str, ...] = field(default=())   # where the facts came from, for notes
    kernel_end: int = 0                      # /chosen linux,kernel-end: the running kernel's __pa(_end)
    rma_end: int | None = None               # end of the real-mode area (memory@0's first range)


def _be(raw: bytes | None) -> int | None:
    return int.from_bytes(raw, "big") if raw and len(raw) in (4, 8) else None


def _pairs(raw: bytes, acells: int, scells: int) -> list[Range]:
    step = 4 * (acells + scells)
    out = []
    for i in range(0, len(raw) - step + 1, step):
        start = int.from_bytes(raw[i:i + 4 * acells], "big")
        size = int.from_bytes(raw[i + 4 * acells:i + step], "big")
        if size:
            out.append(Range.sized(start, size))
    return out


def memory_nodes(tree: DeviceTree) -> list[Node]:
    return [n for n in tree.root.children
            if n.name == "memory" or n.name.startswith("memory@")
            or n.props.get("device_type") == b"memory\0"]


def lmbs(tree: DeviceTree) -> list[tuple[Range, bool]]:
    """(LMB, usable by Linux) for every LMB of ibm,dynamic-reconfiguration-memory
    (ibm,dynamic-memory: u32 count, then {u64 base, u32 drc, u32 reserved, u32 aa, u32 flags};
    ibm,dynamic-memory-v2: u32 count, then {u32 n, u64 base, u32 drc, u32 aa, u32 flags})."""
    node = tree.root.child("ibm,dynamic-reconfiguration-memory")
    if node is None:
        return []
    size = _be(node.props.get("ibm,lmb-size"))
    if not size:
        raise SnapshotError("ibm,dynamic-reconfiguration-memory has no ibm,lmb-size")
    from construct import ConstructError

    from kexec_py.structs import ppc64
    out = []
    try:
        if (v1 := node.props.get("ibm,dynamic-memory")) is not None:
            for lmb in ppc64.dynamic_memory_v1.parse(v1):
                out.append((Range.sized(lmb.base, size), _lmb_usable(lmb.flags)))
        elif (v2 := node.props.get("ibm,dynamic-memory-v2")) is not None:
            for run in ppc64.dynamic_memory_v2.parse(v2):
                out.extend((Range.sized(run.base + j * size, size), _lmb_usable(run.flags))
                           for j in range(run.count))
    except ConstructError:
        raise SnapshotError("ibm,dynamic-reconfiguration-memory: ibm,dynamic-memory is shorter than its count "
                            "says") from None
    return out


def _lmb_usable(flags: int) -> bool:
    from kexec_py.structs.ppc64 import DRCONF_MEM_ASSIGNED, DRCONF_MEM_RESERVED
    return bool(flags & DRCONF_MEM_ASSIGNED) and not flags & DRCONF_MEM_RESERVED


def tree_ram(tree: DeviceTree) -> list[Range]:
    acells, scells = tree.cells()
    ram = [r for n in memory_nodes(tree) for r in _pairs(n.props.get("reg", b""), acells, scells)]
    ram += [r for r, usable in lmbs(tree) if usable]
    limit = _be(tree.root.child("chosen").props.get("linux,memory-limit")) if tree.root.child("chosen") else None
    merged = merge(ram)
    return subtract(merged, [Range(limit, 1 << 64)]) if limit else merged


def rma_end(tree: DeviceTree) -> int | None:
    """The end of the real-mode area: the first range of the memory node that starts at 0
    (PAPR: the first memory block is the RMA, the only memory reachable with the MMU off
    under a hypervisor). The purgatory, its backup copy and the device tree the new kernel
    reads in real mode must lie below it. None when no memory node starts at 0."""
    acells, scells = tree.cells()
    for node in memory_nodes(tree):
        ranges = _pairs(node.props.get("reg", b""), acells, scells)
        if ranges and ranges[0].start == 0:
            return ranges[0].end
    return None


def firmware_ranges(tree: DeviceTree) -> list[Range]:
    """Memory firmware keeps for itself: RTAS, OPAL, reserved-ranges, TCE tables."""
    out = []
    if (rtas := tree.root.child("rtas")) is not None:
        base, size = _be(rtas.props.get("linux,rtas-base")), _be(rtas.props.get("rtas-size"))
        if base is not None and size:
            out.append(Range.sized(base, size))
    if (opal := tree.root.child("ibm,opal")) is not None:
        base, size = _be(opal.props.get("opal-base-address")), _be(opal.props.get("opal-runtime-size"))
        if base is not None and size:
            out.append(Range.sized(base, size))
    out += _pairs(tree.root.props.get("reserved-ranges", b""), 2, 2)

    def walk(node: Node) -> None:
        base, size = _be(node.props.get("linux,tce-base")), _be(node.props.get("linux,tce-size"))
        if base is not None and size:
            out.append(Range.sized(base, size))
        for child in node.children:
            walk(child)
    walk(tree.root)
    return merge(out)


def _flatten(tree: DeviceTree) -> bytes:
    tree.boot_cpuid_phys = BOOT_CPU_PLACEHOLDER
    return build_dtb(tree)


def _boot_reservations(sys: SystemView) -> list[Range]:
    from kexec_py.system.view import FDT_PATH
    if not sys.exists(FDT_PATH):
        return []
    boot = parse_dtb(sys.read_bytes(FDT_PATH), what=FDT_PATH)
    return [Range.sized(a, s) for a, s in boot.reservations if s]


def read_load_facts(sys: SystemView) -> Ppc64Facts:
    tree = sys.live_device_tree()
    ram = tree_ram(tree)
    if not ram:
        raise SnapshotError("the device tree has no memory nodes with a reg property",
                            "is /proc/device-tree (or /sys/firmware/devicetree/base) readable?")
    chosen = tree.root.child("chosen")
    kernel_end = _be(chosen.props.get("linux,kernel-end")) if chosen else None
    return Ppc64Facts(tree=_flatten(tree), ram=tuple(ram), firmware=tuple(firmware_ranges(tree)),
                      boot_reservations=tuple(_boot_reservations(sys)), kernel_end=kernel_end or 0,
                      rma_end=rma_end(tree))


def read_crash_facts(sys: SystemView) -> Ppc64Facts:
    regions = sys.crash_regions()          # /chosen linux,crashkernel-base/-size on ppc64
    if len(regions) != 1:
        raise NoCrashMemory("no linux,crashkernel-base/-size in the device tree's /chosen: memory for a crash "
                            "kernel is not reserved", "boot with crashkernel=256M (or more) on the kernel command line")
    notes = sys.core_notes()
    load = read_load_facts(sys)
    return Ppc64Facts(tree=load.tree, ram=load.ram, firmware=load.firmware,
                      boot_reservations=load.boot_reservations, crash=regions[0],
                      notes=tuple(notes), page_offset=_page_offset(sys), rma_end=load.rma_end)


def _page_offset(sys: SystemView) -> int:
    """vaddr - paddr of /proc/kcore's linear-map entries (the lowest), else PAGE_OFFSET."""
    from kexec_py.system.kcore import parse_kcore
    headers = sys.kcore_headers()
    if headers is None:
        return PAGE_OFFSET
    offsets = [load.offset for load in parse_kcore(headers).loads if load.paddr is not None]
    return min(offsets) if offsets else PAGE_OFFSET


# -- the device tree for the next kernel -----------------------------------------------

@dataclass(frozen=True, slots=True)
class TreeSpec:
    cmdline: str
    initrd: Range | None
    usable: Range | None                  # capture kernel: the memory it may use (0 .. crash end)
    reserve: tuple[Range, ...]            # the reservation block, without the dtb itself
    drop_reservations: tuple[Range, ...] = ()


def next_tree(fdt: bytes, spec: TreeSpec) -> DeviceTree:
    """The tree the next kernel gets (header boot CPU: a placeholder)."""
    tree = parse_dtb(fdt, what="the device tree")
    chosen = tree.root.ensure_child("chosen")
    set_boot_chosen(chosen, cmdline=spec.cmdline, initrd=spec.initrd, stale=STALE_CHOSEN)
    # the next kernel was booted by kexec: an empty marker, as kexec-tools and the kernel's
    # own kexec_file_load (of_kexec_alloc_and_setup_fdt) both add
    chosen.props["linux,booted-from-kexec"] = b""
    if spec.usable is not None:
        _set_usable_memory(tree, spec.usable)
    tree.reservations = [(r.start, r.size) for r in merge(spec.reserve)]
    tree.boot_cpuid_phys = BOOT_CPU_PLACEHOLDER
    return tree


def _set_usable_memory(tree: DeviceTree, usable: Range) -> None:
    """linux,usable-memory on every memory node (a zero pair where none of it is usable,
    since an absent property means all of it), linux,drconf-usable-memory for the LMBs."""
    acells, scells = tree.cells()
    for node in memory_nodes(tree):
        parts = [p for r in _pairs(node.props.get("reg", b""), acells, scells) if (p := r.intersect(usable))]
        node.props["linux,usable-memory"] = (tree.encode_ranges(parts, "linux,usable-memory") if parts
                                            else bytes(4 * (acells + scells)))
    drconf = tree.root.child("ibm,dynamic-reconfiguration-memory")
    if drconf is not None and (blocks := lmbs(tree)):
        out = b""
        for lmb, _ in blocks:
            part = lmb.intersect(usable)
            out += (1 if part else 0).to_bytes(4 * scells, "big")
            if part:
                out += tree.encode_ranges([part], "linux,drconf-usable-memory")
        drconf.props["linux,drconf-usable-memory"] = out


# -- plans -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ppc64le:
    name: str = "ppc64le"
    kexec_arch: int = K.KEXEC_ARCH_PPC64
    native_kexec_arch: int = K.KEXEC_ARCH_PPC64
    destination_limit: int = 1 << 64
    elf_machine: str = "EM_PPC64"
    has_file_syscall: bool = True          # with CONFIG_KEXEC_FILE (Debian's kernels lack it)
    device_tree: bool = True
    hotplug_flag: int = 0
    signed_kind: str = "a kernel with an appended signature"
    formats: tuple[ImageFormat, ...] = (ImageFormat("vmlinux", looks_like_elf, parse_ppc64_vmlinux),)

    def read_crash_facts(self, sys: SystemView) -> Ppc64Facts:
        return read_crash_facts(sys)

    def plan_crash(self, image: Ppc64Vmlinux, inputs: LoadInputs, facts: Ppc64Facts, purgatory) -> SegmentPlan:
        return plan_crash(image, inputs, facts, purgatory)

    def read_load_facts(self, sys: SystemView) -> Ppc64Facts:
        return read_load_facts(sys)

    def plan_load(self, image: Ppc64Vmlinux, inputs: LoadInputs, facts: Ppc64Facts, purgatory) -> SegmentPlan:
        return plan_load(image, inputs, facts, purgatory)

    def file_inputs(self, image: Ppc64Vmlinux) -> FileInputs:
        """The vmlinux itself: the kernel's ppc64 kexec_file_load takes the ELF file."""
        return FileInputs(kernel_memory=image.memsz, kernel_align=64 * KiB, cmdline_max=COMMAND_LINE_SIZE)

    def signed(self, kernel) -> bool:
        """An appended module-style PKCS#7 signature, as on s390x (kexec_py.structs.module_signature)."""
        from kexec_py.structs.module_signature import appended_pkcs7
        return appended_pkcs7(kernel)


def _kernel_segments(image: Ppc64Vmlinux, at: Range, *, run_at_load: bool) -> list[Segment]:
    """The image at ``at``: its first 64 KiB (patched: __run_at_load) as a segment of their
    own, so the rest is loaded from the file's bytes without a copy."""
    head_len = min(BACKUP_SIZE, image.filesz)
    head = bytearray(image.image[:head_len])
    if run_at_load:
        head[RUN_AT_LOAD_OFFSET:RUN_AT_LOAD_OFFSET + 4] = (1).to_bytes(4, "little")
    segments = [Segment("kernel", bytes(head), at.start, BACKUP_SIZE)]
    if at.size > BACKUP_SIZE:
        segments.append(Segment("kernel (rest)", image.image[head_len:], at.start + BACKUP_SIZE, at.size - BACKUP_SIZE))
    return segments


def _finish(image: Ppc64Vmlinux, inputs: LoadInputs, facts: Ppc64Facts, alloc: Allocator, kernel: Range,
            purgatory, *, segments: list[Segment], usable: Range | None, reserve: list[Range],
            cmdline: str, backup: Range | None) -> tuple[list[Segment], int, list[str]]:
    """Purgatory, initrd and device tree; then link the purgatory."""
    purg = _take_real_mode(alloc, "purgatory", Placement(size=purgatory.memsz, align=purgatory.align,
                                                         top_down=False), facts)
    initrd = None
    if inputs.initrd is not None:
        initrd = alloc.take("initrd", Placement(size=max(len(inputs.initrd), 1), top_down=False))
        segments.append(Segment("initrd", inputs.initrd, initrd.start, initrd.size))
        reserve.append(initrd)
    fdt = bytes(inputs.dtb) if inputs.dtb is not None else facts.tree
    spec = TreeSpec(cmdline=cmdline, initrd=Range.sized(initrd.start, len(inputs.initrd)) if initrd else None,
                    usable=usable, reserve=tuple(reserve))
    tree = next_tree(fdt, spec)
    size = len(build_dtb(tree)) + 16                    # room for its own reservation entry
    dtb_range = _take_real_mode(alloc, "dtb", Placement(size=size), facts)
    tree.reservations = [(r.start, r.size) for r in merge([*reserve, dtb_range])]
    dtb = build_dtb(tree)
    if len(dtb) > MAX_DTB_SIZE:
        raise CorruptImage(f"the device tree is {len(dtb)} bytes; kexec-py keeps it under {MAX_DTB_SIZE}")
    segments.append(Segment("dtb", dtb, dtb_range.start, dtb_range.size))

    from kexec_py.plan.purgatory import store_sha256
    linked = purgatory.link(purg.start)
    head = bytes(image.image[:HEAD_BYTES])
    at = linked.entry - linked.base
    linked.buf[at + 4:at + HEAD_BYTES] = head[4:]
    linked.set_int("kernel_entry", kernel.start + image.entry)
    linked.set_int("kernel_dtb", dtb_range.start)
    linked.set_int("kernel_word0", int.from_bytes(head[:4], "little"))
    linked.set_int("skip_checks", 1 if inputs.no_checks else 0)
    if backup is not None:
        linked.set_int("backup_start", backup.start)
        linked.set_int("backup_src", 0)
        linked.set_int("backup_size", BACKUP_SIZE)
    store_sha256(linked, segments)
    purg_seg = Segment("purgatory", bytes(linked.buf), purg.start, purg.size)
    notes = [f"kernel {kernel.start:#x} ({image.memsz:#x} bytes, entry +{image.entry:#x})",
             f"dtb {dtb_range.start:#x} ({len(dtb)} bytes, {len(tree.reservations)} reservations)",
             f"purgatory {purg.start:#x}"]
    return sorted([*segments, purg_seg], key=lambda s: s.mem), linked.entry, notes


def _take_real_mode(alloc: Allocator, what: str, placement: Placement, facts: Ppc64Facts) -> Range:
    """Place what the purgatory and the new kernel's first instructions touch with the MMU
    off (the purgatory and its stack, the backup copy, the device tree) below the end of the
    real-mode area: a hypervisor lets real mode reach no further."""
    if not facts.rma_end:
        return alloc.take(what, placement)
    from kexec_py.errors import NoSpace
    from kexec_py.record import replace
    try:
        return alloc.take(what, replace(placement, max_addr=min(placement.max_addr, facts.rma_end)))
    except NoSpace as e:
        raise NoSpace(f"no room for the {what} below {facts.rma_end:#x}, the end of the real-mode area "
                      f"(memory@0's first range), where it is used with the MMU off ({e.message})",
                      f"reserve the crash region inside the first {facts.rma_end >> 20} MiB: "
                      "crashkernel=SIZE without @OFFSET, or with an OFFSET that keeps it below", what=what) from None


def plan_crash(image: Ppc64Vmlinux, inputs: LoadInputs, facts: Ppc64Facts, purgatory) -> SegmentPlan:
    """Everything in the crash region, bottom-up from its base (the kernel first, where it
    will run), the device tree top-down; nothing on firmware memory."""
    crash = facts.crash
    free = subtract([crash], [*facts.firmware, *facts.boot_reservations])
    alloc = inputs.allocator(free)
    kernel = alloc.take("kernel", Placement(size=image.memsz, align=BACKUP_SIZE, top_down=False))
    segments = _kernel_segments(image, kernel, run_at_load=True)
    backup = _take_real_mode(alloc, "backup", Placement(size=BACKUP_SIZE, top_down=False), facts)
    segments.append(Segment("backup", b"", backup.start, backup.size))

    # What the dump holds: RAM outside the crash region, firmware memory inside it, the first
    # 64 KiB as a range of its own (its bytes are the backup's).
    low = Range(0, BACKUP_SIZE)
    inside_fw = [p for f in facts.firmware if (p := f.intersect(crash))]
    dumped = subtract(subtract(facts.ram, [crash]), [low]) + inside_fw
    dumped = sorted([low, *merge(dumped)]) if any(r.contains(0) for r in facts.ram) else merge(dumped)
    core = build_elf_core_header(CoreHeaderSpec(
        elf_class=64, machine=EM_PPC64, notes=facts.notes, ram=tuple(dumped), page_offset=facts.page_offset,
        backup=Backup(src=low, dst=backup.start)))
    elfcorehdr = alloc.take("elfcorehdr", Placement(size=len(core), top_down=False))
    segments.append(Segment("elfcorehdr", core, elfcorehdr.start, elfcorehdr.size))

    cmdline = f"{inputs.cmdline} elfcorehdr={elfcorehdr.start >> 10}K".strip()
    usable = Range(0, crash.end)
    reserve = [Range(BACKUP_SIZE, crash.start), *[f for f in facts.firmware if f.overlaps(usable)],
               backup, elfcorehdr]
    segments, entry, notes = _finish(image, inputs, facts, alloc, kernel, purgatory, segments=segments,
                                     usable=usable, reserve=reserve, cmdline=cmdline, backup=backup)
    notes = [f"crash region {crash.start:#x}-{crash.last:#x}",
             *(f"firmware memory {f.start:#x}-{f.last:#x} (kept out)" for f in facts.firmware),
             *notes, f"backup {backup.start:#x} <- 0x0 ({BACKUP_SIZE:#x} bytes)",
             f"elfcorehdr {elfcorehdr.start:#x} ({len(core)} bytes)",
             f"linear map: vaddr = paddr + {facts.page_offset:#x}",
             f"capture kernel memory {usable.start:#x}-{usable.last:#x} (linux,usable-memory)"]
    return SegmentPlan(arch="ppc64le", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ON_CRASH | K.KEXEC_ARCH_PPC64, cmdline=cmdline,
                       allowed=(crash,), notes=tuple(notes))


def plan_load(image: Ppc64Vmlinux, inputs: LoadInputs, facts: Ppc64Facts, purgatory) -> SegmentPlan:
    """A kernel for a later ``kexec -e``. The running kernel refuses (ETXTBSY) any segment
    below its own end (/chosen linux,kernel-end), and the new kernel, entered where it is
    loaded with __run_at_load clear, copies itself down to 0 first: so every segment goes
    above both the running kernel and the new one's copy at 0, the kernel lowest
    (bottom-up), the device tree top-down."""
    if not facts.kernel_end:
        raise SnapshotError("the device tree's /chosen has no linux,kernel-end: where the running kernel ends "
                            "is unknown, and the kernel refuses segments below it",
                            "is /proc/device-tree the running kernel's?")
    floor = align_up(max(facts.kernel_end, image.memsz), BACKUP_SIZE)
    free = subtract(facts.ram, [*facts.firmware, Range(0, floor)])
    alloc = inputs.allocator(free)
    kernel = alloc.take("kernel", Placement(size=image.memsz, align=BACKUP_SIZE, top_down=False))
    segments = _kernel_segments(image, kernel, run_at_load=False)
    reserve = [f for f in facts.firmware]
    segments, entry, notes = _finish(image, inputs, facts, alloc, kernel, purgatory, segments=segments,
                                     usable=None, reserve=reserve, cmdline=inputs.cmdline, backup=None)
    return SegmentPlan(arch="ppc64le", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ARCH_PPC64, cmdline=inputs.cmdline, allowed=tuple(free), notes=tuple(notes))
