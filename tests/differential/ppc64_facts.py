"""Facts about a captured ppc64le crash load (``kexec -p`` of an ELF vmlinux), for the
differential test against kexec-tools (tests/test_differential_ppc64le.py).

Written from the published layouts only (ELF, the flattened device tree of the
Devicetree Specification, chapter 5), with ``struct``, not with kexec_py's own
parsers, so a mistake there cannot cancel itself out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tests.differential.facts import (
    ET_CORE, Call, CaptureError, Segment, _backup_facts, core_header_facts, elfcorehdr_arg,
)

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
RUN_AT_LOAD = 0x5C               # head_64.S: __run_at_load, 1 = run where loaded
BACKUP_SIZE = 64 * 1024


# -- the flattened device tree ----------------------------------------------------------

@dataclass(frozen=True)
class Fdt:
    version: int
    last_comp_version: int
    boot_cpuid_phys: int
    reservations: tuple[tuple[int, int], ...]     # (address, size) as listed
    props: dict[str, dict[str, bytes]]            # node path -> property name -> value


def parse_fdt(buf: bytes) -> Fdt:
    if len(buf) < 40 or struct.unpack_from(">I", buf)[0] != FDT_MAGIC:
        raise CaptureError("the device tree segment does not start with the FDT magic")
    (_, totalsize, off_struct, off_strings, off_rsv, version, last_comp, boot_cpu,
     size_strings, size_struct) = struct.unpack_from(">10I", buf)
    if totalsize > len(buf):
        raise CaptureError(f"FDT totalsize {totalsize:#x} beyond the segment's {len(buf):#x} bytes")
    reservations = []
    at = off_rsv
    while True:
        addr, size = struct.unpack_from(">QQ", buf, at)
        at += 16
        if addr == 0 and size == 0:
            break
        reservations.append((addr, size))
    strings = buf[off_strings:off_strings + size_strings]
    props: dict[str, dict[str, bytes]] = {}
    path: list[str] = []
    at = off_struct
    end = off_struct + size_struct
    while at < end:
        (token,) = struct.unpack_from(">I", buf, at)
        at += 4
        if token == FDT_BEGIN_NODE:
            name = buf[at:buf.index(b"\0", at)].decode()
            at = (at + len(name) + 1 + 3) & ~3
            path.append(name)
            props["/" + "/".join(p for p in path if p)] = {}
        elif token == FDT_END_NODE:
            path.pop()
        elif token == FDT_PROP:
            length, nameoff = struct.unpack_from(">II", buf, at)
            at += 8
            name = strings[nameoff:strings.index(b"\0", nameoff)].decode()
            props["/" + "/".join(p for p in path if p)][name] = bytes(buf[at:at + length])
            at = (at + length + 3) & ~3
        elif token == FDT_NOP:
            continue
        elif token == FDT_END:
            break
        else:
            raise CaptureError(f"FDT token {token:#x} at {at - 4:#x}")
    return Fdt(version, last_comp, boot_cpu, tuple(reservations), props)


def _cells(value: bytes, n: int) -> int:
    return int.from_bytes(value[:4 * n], "big")


def _ranges(value: bytes, acells: int, scells: int) -> tuple[tuple[int, int], ...]:
    step = 4 * (acells + scells)
    return tuple((_cells(value[i:], acells), _cells(value[i + 4 * acells:], scells))
                 for i in range(0, len(value) - step + 1, step))


def merged(ranges) -> tuple[tuple[int, int], ...]:
    """(start, size) ranges as the memory they cover: sorted, touching ones joined."""
    out: list[list[int]] = []
    for start, size in sorted(r for r in ranges if r[1]):
        if out and start <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], start + size - out[-1][0])
        else:
            out.append([start, size])
    return tuple((s, n) for s, n in out)


def tree_facts(fdt: Fdt) -> dict:
    root = fdt.props["/"]
    acells = _cells(root.get("#address-cells", b"\0\0\0\2"), 1)
    scells = _cells(root.get("#size-cells", b"\0\0\0\1"), 1)
    chosen = fdt.props.get("/chosen", {})
    facts = {
        "dtb.version": (fdt.version, fdt.last_comp_version),
        "dtb.boot_cpuid_phys": fdt.boot_cpuid_phys,
        "dtb.reserved_memory": merged(fdt.reservations),
        "dtb.nodes": tuple(sorted(fdt.props)),
        "cmdline": chosen.get("bootargs", b"").rstrip(b"\0").decode(),
        "chosen.initrd": tuple(_cells(chosen[k], len(chosen[k]) // 4) if k in chosen else None
                               for k in ("linux,initrd-start", "linux,initrd-end")),
    }
    for path, props in fdt.props.items():
        if path.split("/")[-1].startswith("memory@") or path == "/memory":
            facts[f"memory.{path}.reg"] = _ranges(props.get("reg", b""), acells, scells)
            usable = props.get("linux,usable-memory")
            facts[f"memory.{path}.usable"] = None if usable is None else _ranges(usable, acells, scells)
    drconf = fdt.props.get("/ibm,dynamic-reconfiguration-memory")
    if drconf is not None:
        facts["drconf.usable"] = drconf.get("linux,drconf-usable-memory")
    # every other property, by node: its value (the ones above, and those that say
    # where things are, are compared above)
    for path, props in fdt.props.items():
        for name, value in props.items():
            facts[f"prop.{path}:{name}"] = value
    return facts


# -- the whole load ----------------------------------------------------------------------

def crash_load_facts(call: Call, *, image: bytes, initrd: bytes | None, user_cmdline: str) -> dict:
    """``image``: the vmlinux's first PT_LOAD (its file bytes), as both load it."""
    if call.name != "kexec_load":
        raise CaptureError(f"expected a kexec_load call, got {call.name}")
    # the image as loaded, but for the word __run_at_load, which is compared on its own
    patched = bytearray(image)
    patched[RUN_AT_LOAD:RUN_AT_LOAD + 4] = bytes(4)

    def unpatched(buf: bytes) -> bytes:
        return buf[:RUN_AT_LOAD] + bytes(4) + buf[RUN_AT_LOAD + 4:] if len(buf) >= RUN_AT_LOAD + 4 else buf

    head = bytes(patched[:0x100])
    base = next((s.mem for s in call.segments if unpatched(s.buf[:0x100]) == head), None)
    if base is None:
        raise CaptureError("no segment starts with the kernel image")
    roles: dict[str, list[Segment]] = {}
    entry = call.args["entry"]
    for s in sorted(call.segments, key=lambda s: s.mem):
        if s.buf[:4] == b"\x7fELF" and int.from_bytes(s.buf[16:18], "little") == ET_CORE:
            role = "elfcorehdr"
        elif s.buf[:4] == FDT_MAGIC.to_bytes(4, "big"):
            role = "dtb"
        elif base <= s.mem and s.buf and (unpatched(s.buf) if s.mem == base else s.buf) == bytes(
                patched[s.mem - base:s.mem - base + len(s.buf)]):
            role = "kernel"
        elif initrd is not None and s.buf == initrd:
            role = "initrd"
        elif s.mem <= entry < s.end:
            role = "purgatory"
        elif s.buf.rstrip(b"\0") == b"" and s.memsz == BACKUP_SIZE:
            role = "backup"
        else:
            raise CaptureError(f"cannot tell what the segment at {s.mem:#x} ({len(s.buf):#x} bytes) is")
        if role != "kernel" and role in roles:
            raise CaptureError(f"two {role} segments")
        roles.setdefault(role, []).append(s)
    for needed in ("kernel", "purgatory", "dtb", "elfcorehdr", "backup") + (("initrd",) if initrd else ()):
        if needed not in roles:
            raise CaptureError(f"no {needed} segment among {[hex(s.mem) for s in call.segments]}")
    kernel = roles["kernel"]
    for a, b in zip(kernel, kernel[1:]):
        if a.end != b.mem or len(a.buf) != a.memsz:
            raise CaptureError(f"the kernel's segments at {a.mem:#x} and {b.mem:#x} do not continue each other")
    loaded = b"".join(s.buf for s in kernel)
    run_at_load = int.from_bytes(loaded[RUN_AT_LOAD:RUN_AT_LOAD + 4], "little")
    facts: dict = {
        "flags": call.args["flags"],
        "segments.roles": tuple(sorted(roles)),
        "kernel.image_loaded_whole": unpatched(loaded) == bytes(patched),
        "kernel.run_at_load_word": run_at_load,
        "segment.kernel": (kernel[0].mem, kernel[-1].end - kernel[0].mem),
    }
    for role, segs in roles.items():
        if role != "kernel":
            facts[f"segment.{role}"] = (segs[0].mem, segs[0].memsz)
    dtb = roles["dtb"][0]
    facts.update(tree_facts(parse_fdt(dtb.buf)))
    facts["cmdline.added"] = tuple(w for w in facts["cmdline"].split() if w not in user_cmdline.split())
    core = roles["elfcorehdr"][0]
    if elfcorehdr_arg(facts["cmdline"]) != core.mem:
        raise CaptureError(f"the command line says elfcorehdr={elfcorehdr_arg(facts['cmdline'])}, "
                           f"the ELF core header segment is at {core.mem:#x}")
    facts.update(core_header_facts(core.buf))
    facts["segment.elfcorehdr.bufsz"] = len(core.buf)
    facts.update(_backup_facts(facts["core.loads"], roles["backup"][0], roles["purgatory"][0], 8))
    if initrd is not None:
        r = roles["initrd"][0]
        facts["chosen.initrd_is_segment"] = facts["chosen.initrd"] == (r.mem, r.mem + len(initrd))
    # what the reservation block must cover: the segments the capture kernel must not reuse
    reserved = facts["dtb.reserved_memory"]
    facts["dtb.reserves"] = tuple(sorted(
        role for role in ("backup", "elfcorehdr", "initrd", "dtb") if role in roles
        and any(s <= roles[role][0].mem and roles[role][0].mem + len(roles[role][0].buf) <= s + n
                for s, n in reserved)))
    return facts
