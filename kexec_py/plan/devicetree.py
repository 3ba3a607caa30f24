"""Flattened device trees (DTB): read one, change /chosen, write it back.

The format is the Devicetree Specification's (v0.4, chapter 5), all big-endian:
a 40-byte header, the memory reservation block (pairs of u64, ended by a zero
pair), the structure block (tokens BEGIN_NODE name, PROP len nameoff value,
END_NODE, NOP, END, each 4-byte aligned) and the strings block (property names,
NUL-terminated). We write version 17 (last compatible 16), blocks in the order
header, reservations, structure, strings, without free space, and property
names shared the way dtc shares them (a name that ends an earlier one reuses
its bytes), so a tree read from ``dtc -O dtb`` output is written back byte for
byte.

``kexec_chosen`` is what the loaders use: the running kernel's tree
(/sys/firmware/fdt; ``SystemView.device_tree()`` also builds it from
/proc/device-tree) with the next kernel's command line, initrd, and for a
capture kernel the ELF core header and the memory it may use.

``DeviceTree.boot_cpuid_phys`` is None when the header's boot CPU is not known
(a tree built from /proc/device-tree, which has no header): ``build_dtb``
refuses such a tree until the arch sets it.

Why not a library: PyPI's ``fdt`` (pyFDT, pure Python, last release 0.3.3 in
2022) raises "Unknown Tag: 4" on the kernel's own /sys/firmware/fdt, because it
does not accept FDT_NOP tokens, which the kernel leaves where it removed
``rng-seed``; on a NOP-free copy it parses about 9 times slower than this module
and turns values into typed objects (strings, words, bytes) that the /chosen
edits would have to turn back. pylibfdt (Debian's python3-libfdt, libfdt's SWIG
binding) reads and edits the same trees, but it is C: PyPI has it only as a
source package that needs a compiler and SWIG, and Debian's build is for the
system interpreter, so ``pip install .`` could not depend on it. What arm64
needs (read a DTB, change /chosen properties, drop reservations, write a compact
DTB, encode cells) is the code below.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from kexec_py.errors import CorruptImage, UsageError
from kexec_py.plan.ranges import Range

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
HEADER = struct.Struct(">10I")
VERSION, LAST_COMP_VERSION = 17, 16
MAX_DTB_SIZE = 2 << 20              # booting.rst: the dtb must not exceed 2 MiB
KASLR_SEED_BYTES = 8
RNG_SEED_BYTES = 64

# /chosen properties that describe the running kernel's boot and must not reach the next
STALE_CHOSEN = ("linux,elfcorehdr", "linux,usable-memory-range", "linux,initrd-start",
                "linux,initrd-end", "linux,booted-from-kexec")


@dataclass(slots=True)
class Node:
    name: str
    props: dict[str, bytes] = field(default_factory=dict)   # in file order
    children: list[Node] = field(default_factory=list)

    def child(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)

    def ensure_child(self, name: str) -> Node:
        node = self.child(name)
        if node is None:
            node = Node(name)
            self.children.append(node)
        return node


@dataclass(slots=True)
class DeviceTree:
    root: Node
    reservations: list[tuple[int, int]] = field(default_factory=list)   # (address, size)
    boot_cpuid_phys: int | None = 0     # None: not known (a tree built from a directory)

    def cells(self) -> tuple[int, int]:
        """The root's #address-cells and #size-cells (2 and 1 when absent, as the spec says)."""
        def get(name: str, default: int) -> int:
            raw = self.root.props.get(name)
            return struct.unpack(">I", raw)[0] if raw and len(raw) == 4 else default
        return get("#address-cells", 2), get("#size-cells", 1)

    def encode_ranges(self, ranges: list[Range], what: str) -> bytes:
        """``<address size>`` pairs in the root's cell sizes; refuses values that do not fit."""
        acells, scells = self.cells()
        out = b""
        for r in ranges:
            out += _cells(r.start, acells, what) + _cells(r.size, scells, what)
        return out


def _cells(value: int, ncells: int, what: str) -> bytes:
    if ncells not in (1, 2) or value >= 1 << (32 * ncells):
        raise UsageError(f"{what}: {value:#x} does not fit in the device tree's {ncells} cell(s)",
                         "pass a device tree with #address-cells = #size-cells = 2 (--dtb)")
    return value.to_bytes(4 * ncells, "big")


# --- reading --------------------------------------------------------------------------

def parse_dtb(data: bytes, *, what: str = "device tree") -> DeviceTree:
    """Parse a DTB (version 16 or later). Raises CorruptImage naming ``what``."""
    data = bytes(data)
    if len(data) < HEADER.size or struct.unpack_from(">I", data)[0] != FDT_MAGIC:
        raise CorruptImage(f"{what} is not a flattened device tree (no d00dfeed magic)",
                           "pass a .dtb file, e.g. one made by dtc -O dtb")
    (_, total, off_struct, off_strings, off_rsv, version, _last, boot_cpu,
     size_strings, size_struct) = HEADER.unpack_from(data)
    if version == 16:
        # size_dt_struct came with version 17: a version-16 block (what ppc64's early boot
        # code flattens into /sys/firmware/fdt) ends at its FDT_END token, inside the blob
        size_struct = max(total - off_struct, 0)
    if version < 16 or total > len(data) or max(off_struct + size_struct, off_strings + size_strings) > total:
        raise CorruptImage(f"{what}: bad header (version {version}, {total} bytes, file {len(data)})",
                           "the device tree is truncated or too old (version 16+ needed)")
    strings = data[off_strings:off_strings + size_strings]
    try:
        root = _parse_struct(data[off_struct:off_struct + size_struct], strings)
        reservations = _parse_reservations(data, off_rsv)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
        raise CorruptImage(f"{what}: damaged structure block ({e})", "pass an intact .dtb") from None
    return DeviceTree(root, reservations, boot_cpu)


def _parse_reservations(data: bytes, offset: int) -> list[tuple[int, int]]:
    out = []
    while True:
        addr, size = struct.unpack_from(">QQ", data, offset)
        if addr == 0 and size == 0:
            return out
        out.append((addr, size))
        offset += 16


def _cstring(data: bytes, offset: int) -> str:
    end = data.index(b"\0", offset)
    return data[offset:end].decode("ascii")


def _parse_struct(block: bytes, strings: bytes) -> Node:
    stack: list[Node] = []
    root: Node | None = None
    pos = 0
    while True:
        (token,) = struct.unpack_from(">I", block, pos)
        pos += 4
        if token == FDT_BEGIN_NODE:
            name = _cstring(block, pos)
            pos = _align4(pos + len(name) + 1)
            node = Node(name)
            if stack:
                stack[-1].children.append(node)
            elif root is None:
                root = node
            else:
                raise ValueError("a second root node")
            stack.append(node)
        elif token == FDT_END_NODE:
            stack.pop()
        elif token == FDT_PROP:
            length, nameoff = struct.unpack_from(">II", block, pos)
            value = block[pos + 8:pos + 8 + length]
            if len(value) != length:
                raise ValueError("a property runs past the block")
            stack[-1].props[_cstring(strings, nameoff)] = value
            pos = _align4(pos + 8 + length)
        elif token == FDT_END:
            if stack or root is None:
                raise ValueError("unbalanced nodes")
            return root
        elif token != FDT_NOP:
            raise ValueError(f"unknown token {token:#x} at {pos - 4:#x}")


def _align4(n: int) -> int:
    return (n + 3) & ~3


# --- writing --------------------------------------------------------------------------

def build_dtb(tree: DeviceTree) -> bytes:
    """The tree as a compact version-17 DTB."""
    if tree.boot_cpuid_phys is None:
        raise ValueError("the device tree's boot_cpuid_phys is not known: the arch must set it "
                         "(the physical id of the CPU that will enter the kernel)")
    strings = bytearray()
    struct_block = bytearray()

    def name_offset(name: str) -> int:
        key = name.encode("ascii") + b"\0"
        at = strings.find(key)
        if at < 0:
            at = len(strings)
            strings.extend(key)
        return at

    def emit(node: Node) -> None:
        struct_block.extend(struct.pack(">I", FDT_BEGIN_NODE))
        name = node.name.encode("ascii") + b"\0"
        struct_block.extend(name + bytes(_align4(len(name)) - len(name)))
        for key, value in node.props.items():
            struct_block.extend(struct.pack(">III", FDT_PROP, len(value), name_offset(key)))
            struct_block.extend(value + bytes(_align4(len(value)) - len(value)))
        for child in node.children:
            emit(child)
        struct_block.extend(struct.pack(">I", FDT_END_NODE))

    emit(tree.root)
    struct_block.extend(struct.pack(">I", FDT_END))
    rsv = b"".join(struct.pack(">QQ", a, s) for a, s in tree.reservations) + bytes(16)
    off_rsv = HEADER.size
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(struct_block)
    total = off_strings + len(strings)
    header = HEADER.pack(FDT_MAGIC, total, off_struct, off_strings, off_rsv, VERSION, LAST_COMP_VERSION,
                         tree.boot_cpuid_phys, len(strings), len(struct_block))
    return header + rsv + bytes(struct_block) + bytes(strings)


# --- the kexec changes ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ChosenSpec:
    """What the next kernel's /chosen must say."""

    cmdline: str
    initrd: Range | None = None             # where the initrd was placed (its exact bytes)
    elfcorehdr: Range | None = None         # capture kernel: the ELF core header segment
    usable: tuple[Range, ...] = ()          # capture kernel: the crash regions, highest first
    random: object = os.urandom             # random(n) -> bytes (tests pass a fixed one)


def kexec_chosen(tree: DeviceTree, spec: ChosenSpec) -> DeviceTree:
    """Rewrite ``tree`` in place for the next kernel and return it.

    Drops what described the running kernel's boot (its initrd, a capture
    kernel's properties, the reservation of the old initrd), sets bootargs,
    the new initrd and the capture properties, and gives the next kernel fresh
    seeds: a kaslr-seed where the tree had one (the running kernel zeroes it
    once used), and a new rng-seed.
    """
    chosen = tree.root.ensure_child("chosen")
    old_initrd = _initrd_of(chosen)
    if old_initrd is not None:
        tree.reservations = [r for r in tree.reservations if r != old_initrd]
    set_boot_chosen(chosen, cmdline=spec.cmdline, initrd=spec.initrd, stale=STALE_CHOSEN)
    if spec.elfcorehdr is not None:
        chosen.props["linux,elfcorehdr"] = tree.encode_ranges([spec.elfcorehdr], "linux,elfcorehdr")
    if spec.usable:
        chosen.props["linux,usable-memory-range"] = tree.encode_ranges(list(spec.usable),
                                                                       "linux,usable-memory-range")
    if "kaslr-seed" in chosen.props:
        chosen.props["kaslr-seed"] = bytes(spec.random(KASLR_SEED_BYTES))
    chosen.props["rng-seed"] = bytes(spec.random(RNG_SEED_BYTES))
    return tree


def set_boot_chosen(chosen: Node, *, cmdline: str, initrd: Range | None, stale: tuple[str, ...]) -> None:
    """/chosen for the next kernel: the running kernel's own properties named in ``stale``
    dropped, ``bootargs`` (none for an empty command line), and the initrd's 64-bit
    start and end."""
    for name in stale:
        chosen.props.pop(name, None)
    if cmdline:
        chosen.props["bootargs"] = cmdline.encode() + b"\0"
    else:
        chosen.props.pop("bootargs", None)
    if initrd is not None:
        chosen.props["linux,initrd-start"] = initrd.start.to_bytes(8, "big")
        chosen.props["linux,initrd-end"] = initrd.end.to_bytes(8, "big")


def _initrd_of(chosen: Node) -> tuple[int, int] | None:
    """(start, size) of the initrd /chosen names, as a reservation entry would give it."""
    start, end = chosen.props.get("linux,initrd-start"), chosen.props.get("linux,initrd-end")
    if not start or not end or len(start) not in (4, 8) or len(end) not in (4, 8):
        return None
    lo, hi = int.from_bytes(start, "big"), int.from_bytes(end, "big")
    return (lo, hi - lo) if hi > lo else None


def check_size(dtb: bytes, what: str) -> None:
    if len(dtb) > MAX_DTB_SIZE:
        raise UsageError(f"{what} is {len(dtb)} bytes once updated; arm64 kernels take at most 2 MiB",
                         "pass a smaller device tree with --dtb")
