"""Turn a captured kexec_load (by capture.c, or by kexec-py's recording backend
through ours.py: both write the same files) into facts that can be compared.

A capture directory holds ``calls.txt`` and, for call N, ``N.segments.txt``
("mem memsz bufsz" per line, hex) and ``N.seg-I.bin`` (segment I's buffer).

The parsing here is written with ``struct`` from the published layouts (ELF,
x86 boot protocol), not with kexec_py's own construct definitions, so a
mistake in those cannot cancel itself out.

Facts are a flat dict ``name -> value`` (tuples, ints, strings), so two captures
compare key by key.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

PT_LOAD, PT_NOTE = 1, 4
ET_CORE = 4
E820_NAMES = {1: "ram", 2: "reserved", 3: "acpi", 4: "nvs", 5: "unusable", 7: "pmem", 12: "pram"}
SETUP_E820_EXT = 1
SETUP_EFI = 4
SETUP_RNG_SEED = 9
EFI_SETUP_DATA_LEN = 0x60          # struct efi_setup_data: 4 + 8 u64
EFI_DESC = "<IIQQQQ"               # the UEFI memory descriptor, version 1


class CaptureError(AssertionError):
    """The capture is not what a kexec_load of a bzImage looks like."""


@dataclass(frozen=True)
class Segment:
    mem: int
    memsz: int
    buf: bytes

    @property
    def end(self) -> int:
        return self.mem + self.memsz


@dataclass(frozen=True)
class Call:
    name: str
    args: dict[str, int]
    segments: tuple[Segment, ...]


def file_load_facts(directory: Path, call: Call) -> dict:
    """A kexec_file_load: its flags, command line (with its NUL) and the files' digests."""
    import hashlib
    if call.name != "kexec_file_load":
        raise CaptureError(f"expected a kexec_file_load call, got {call.name}")
    n = call.args["n"]

    def digest(what: str, fd: int):
        path = directory / f"{n}.{what}.bin"
        if (fd >= 0) != path.exists():
            raise CaptureError(f"{what} fd {fd} but {path} {'exists' if path.exists() else 'is missing'}")
        return hashlib.sha256(path.read_bytes()).hexdigest() if fd >= 0 else None

    cmdline = (directory / f"{n}.cmdline.bin").read_bytes()
    if len(cmdline) != call.args["cmdline_len"]:
        raise CaptureError(f"cmdline of {len(cmdline)} bytes, cmdline_len {call.args['cmdline_len']}")
    return {"flags": call.args["flags"], "cmdline": cmdline,
            "kernel_sha256": digest("kernel", call.args["kernel_fd"]),
            "initrd_sha256": digest("initrd", call.args["initrd_fd"])}


def read_calls(directory: Path) -> list[Call]:
    log = directory / "calls.txt"
    if not log.exists():
        return []
    calls = []
    for line in log.read_text().splitlines():
        name, *fields = line.split()
        args = {k: int(v, 0) for k, v in (f.split("=", 1) for f in fields)}
        segments = ()
        if name == "kexec_load":
            n = args["n"]
            rows = (directory / f"{n}.segments.txt").read_text().split("\n")
            segs = []
            for i, row in enumerate(r for r in rows if r.strip()):
                mem, memsz, bufsz = (int(x, 16) for x in row.split())
                buf = (directory / f"{n}.seg-{i}.bin").read_bytes()
                if len(buf) != bufsz:
                    raise CaptureError(f"segment {i}: {len(buf)} bytes dumped, bufsz {bufsz:#x}")
                segs.append(Segment(mem, memsz, buf))
            if len(segs) != args["nr_segments"]:
                raise CaptureError(f"{len(segs)} segments dumped, nr_segments {args['nr_segments']}")
            segments = tuple(segs)
        calls.append(Call(name, args, segments))
    return calls


class Memory:
    """The physical memory the segments would fill, readable by address."""

    def __init__(self, segments):
        self.segments = sorted(segments, key=lambda s: s.mem)

    def segment_at(self, addr: int) -> Segment | None:
        for s in self.segments:
            if s.mem <= addr < s.end:
                return s
        return None

    def read(self, addr: int, size: int) -> bytes:
        s = self.segment_at(addr)
        if s is None or addr + size > s.end:
            raise CaptureError(f"{addr:#x}+{size:#x} is not inside one segment")
        off = addr - s.mem
        data = s.buf[off:off + size]
        return data + bytes(size - len(data))          # memsz beyond bufsz reads as zeros

    def cstring(self, addr: int, limit: int = 4096) -> bytes:
        s = self.segment_at(addr)
        if s is None:
            raise CaptureError(f"string at {addr:#x} is not inside a segment")
        data = s.buf[addr - s.mem:addr - s.mem + limit]
        if b"\0" not in data:
            raise CaptureError(f"string at {addr:#x} has no NUL within {limit} bytes")
        return data[:data.index(b"\0")]


# -- the ELF core header --------------------------------------------------------

def core_header_facts(buf: bytes) -> dict:
    if buf[:4] != b"\x7fELF":
        raise CaptureError("elfcorehdr segment does not start with an ELF header")
    cls = buf[4]
    if cls == 2:
        e_type, e_machine, _, _, e_phoff, _, _, _, e_phentsize, e_phnum = struct.unpack_from(
            "<HHIQQQIHHH", buf, 16)
        fmt, fields = "<IIQQQQQQ", ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")
    elif cls == 1:
        e_type, e_machine, _, _, e_phoff, _, _, _, e_phentsize, e_phnum = struct.unpack_from(
            "<HHIIIIIHHH", buf, 16)
        fmt, fields = "<IIIIIIII", ("type", "offset", "vaddr", "paddr", "filesz", "memsz", "flags", "align")
    else:
        raise CaptureError(f"elfcorehdr has ELF class {cls}")
    if e_phentsize != struct.calcsize(fmt):
        raise CaptureError(f"elfcorehdr e_phentsize {e_phentsize}")
    phdrs = [dict(zip(fields, struct.unpack_from(fmt, buf, e_phoff + i * e_phentsize))) for i in range(e_phnum)]
    other = [p["type"] for p in phdrs if p["type"] not in (PT_LOAD, PT_NOTE)]
    if other:
        raise CaptureError(f"elfcorehdr has program headers of type {other}")
    return {
        "core.class": 64 if cls == 2 else 32,
        "core.ident": buf[4:16].hex(),
        "core.type_machine": (e_type, e_machine),
        # each PT_NOTE: (offset, paddr, vaddr, size, memsz, flags)
        "core.notes": tuple((p["offset"], p["paddr"], p["vaddr"], p["filesz"], p["memsz"], p["flags"])
                            for p in phdrs if p["type"] == PT_NOTE),
        # each PT_LOAD: (offset, vaddr, paddr, filesz, memsz, flags, align)
        "core.loads": tuple((p["offset"], p["vaddr"], p["paddr"], p["filesz"], p["memsz"], p["flags"], p["align"])
                            for p in phdrs if p["type"] == PT_LOAD),
        "core.phdr_order": tuple(p["type"] for p in phdrs),
    }


# -- the zero page ----------------------------------------------------------------

def _u(buf: bytes, off: int, size: int) -> int:
    return int.from_bytes(buf[off:off + size], "little")


def zero_page_facts(zp: bytes, mem: Memory) -> dict:
    n = zp[0x1E8]
    e820 = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(min(n, 128))]
    setup_data_types = []
    efi_setup = None
    addr = _u(zp, 0x250, 8)
    seen = set()
    while addr:
        if addr in seen:
            raise CaptureError(f"setup_data chain loops at {addr:#x}")
        seen.add(addr)
        nxt, typ, length = struct.unpack("<QII", mem.read(addr, 16))
        setup_data_types.append(typ)
        data = mem.read(addr + 16, length)
        if typ == SETUP_E820_EXT:
            e820 += [struct.unpack_from("<QQI", data, 20 * i) for i in range(length // 20)]
        if typ == SETUP_RNG_SEED and length != 32:
            raise CaptureError(f"SETUP_RNG_SEED of {length} bytes")
        if typ == SETUP_EFI:
            efi_setup = struct.unpack("<12Q", data) if length == EFI_SETUP_DATA_LEN else data.hex()
        addr = nxt
    cmd_ptr = _u(zp, 0x228, 4) | _u(zp, 0xC8, 4) << 32
    initrd = (_u(zp, 0x218, 4) | _u(zp, 0xC0, 4) << 32, _u(zp, 0x21C, 4) | _u(zp, 0xC4, 4) << 32)
    return {
        "e820": tuple((start, start + size - 1, E820_NAMES.get(typ, typ)) for start, size, typ in e820),
        "cmdline": mem.cstring(cmd_ptr).decode("utf-8", "replace") if cmd_ptr else None,
        "setup_data": tuple(setup_data_types),
        "zeropage.initrd": initrd,
        "zeropage.acpi_rsdp_addr": _u(zp, 0x70, 8),
        "zeropage.ext_mem_k": _u(zp, 0x2, 2),
        "zeropage.alt_mem_k": _u(zp, 0x1E0, 4),
        "zeropage.type_of_loader": zp[0x210],
        "zeropage.loadflags": zp[0x211],
        "zeropage.root_flags_dev": (_u(zp, 0x1F2, 2), _u(zp, 0x1FC, 2)),
        "zeropage.hardware_subarch": _u(zp, 0x23C, 4),
        "zeropage.header_version": _u(zp, 0x206, 2),
        **efi_facts(zp, mem),
        "efi.setup_data": efi_setup,
        "zeropage.screen_info.orig_video_isVGA": zp[0x0F],
    }


def efi_memmap_addr(zp: bytes) -> int:
    return _u(zp, 0x1C0 + 0x10, 4) | _u(zp, 0x1C0 + 0x1C, 4) << 32


def efi_facts(zp: bytes, mem: Memory) -> dict:
    """efi_info (zero-page.rst, 0x1c0) without where the memory map lies, and the map itself."""
    sig, systab, desc_size, version, _, size, systab_hi, _ = struct.unpack_from("<4sIIIIIII", zp, 0x1C0)
    memmap = None
    if size:
        data = mem.read(efi_memmap_addr(zp), size)
        if desc_size != struct.calcsize(EFI_DESC) or size % desc_size:
            raise CaptureError(f"EFI memory map of {size} bytes, descriptors of {desc_size}")
        memmap = tuple(struct.unpack_from(EFI_DESC, data, i) for i in range(0, size, desc_size))
    return {"efi.info": (sig, systab | systab_hi << 32, desc_size, version, size), "efi.memmap": memmap}


# -- a whole crash or normal load -------------------------------------------------

def load_facts(call: Call, *, kernel_payload: bytes, initrd: bytes | None, user_cmdline: str,
               word_size: int = 8) -> dict:
    """Everything comparable about one kexec_load of a bzImage; ``word_size`` is the
    size of the purgatory's ``unsigned long`` (4 on i386)."""
    if call.name != "kexec_load":
        raise CaptureError(f"expected a kexec_load call, got {call.name}")
    mem = Memory(call.segments)
    facts: dict = {"flags": call.args["flags"]}
    roles: dict[str, Segment] = {}
    setups = [s for s in call.segments if s.buf[0x202:0x206] == b"HdrS"]
    memmap_at = efi_memmap_addr(setups[0].buf[:4096]) if len(setups) == 1 and _u(setups[0].buf, 0x1D4, 4) else None
    for s in call.segments:
        if s.buf[:4] == b"\x7fELF" and _u(s.buf, 16, 2) == ET_CORE:
            role = "elfcorehdr"
        elif s.buf[0x202:0x206] == b"HdrS":
            role = "setup"
        elif s.buf == kernel_payload:
            role = "kernel"
        elif initrd is not None and s.buf == initrd:
            role = "initrd"
        elif s.mem <= call.args["entry"] < s.end:
            role = "purgatory"
        elif s.buf.rstrip(b"\0") == b"" and s.memsz >= 0x10000:
            role = "backup"
        elif len(s.buf) == 48 and _u(s.buf, 8, 4) == SETUP_RNG_SEED:
            role = "rng_seed"
        elif len(s.buf) == 16 + EFI_SETUP_DATA_LEN and _u(s.buf, 8, 4) == SETUP_EFI:
            role = "setup_efi"
        elif s.mem == memmap_at:
            role = "efi_memmap"
        else:
            raise CaptureError(f"cannot tell what the segment at {s.mem:#x} ({len(s.buf):#x} bytes) is")
        if role in roles:
            raise CaptureError(f"two {role} segments: {roles[role].mem:#x} and {s.mem:#x}")
        roles[role] = s
    for needed in ("setup", "kernel", "purgatory") + (("initrd",) if initrd is not None else ()):
        if needed not in roles:
            raise CaptureError(f"no {needed} segment among {[hex(s.mem) for s in call.segments]}")
    facts["segments.roles"] = tuple(sorted(roles))
    for role, s in roles.items():
        facts[f"segment.{role}"] = (s.mem, s.memsz)
    facts["segment.setup.bufsz"] = len(roles["setup"].buf)
    facts.update(zero_page_facts(roles["setup"].buf[:4096], mem))
    cmdline = facts["cmdline"] or ""
    facts["cmdline.added"] = _added(cmdline, user_cmdline)
    ramdisk = facts["zeropage.initrd"]
    if initrd is not None and ramdisk != (roles["initrd"].mem, len(initrd)):
        raise CaptureError(f"zero page points at initrd {ramdisk}, segment is at {roles['initrd'].mem:#x}")
    if "elfcorehdr" in roles:
        core = roles["elfcorehdr"]
        if elfcorehdr_arg(cmdline) != core.mem:
            raise CaptureError(f"the command line says elfcorehdr={elfcorehdr_arg(cmdline)}, "
                               f"the ELF core header segment is at {core.mem:#x}")
        facts.update(core_header_facts(core.buf))
        facts["segment.elfcorehdr.bufsz"] = len(core.buf)
        facts.update(_backup_facts(facts["core.loads"], roles.get("backup"), roles["purgatory"], word_size))
    return facts


def _added(cmdline: str, user: str) -> tuple[str, ...]:
    """The words the loader put on the command line besides the user's (in order)."""
    words = cmdline.split()
    for w in user.split():
        if w in words:
            words.remove(w)
    return tuple(words)


def elfcorehdr_arg(cmdline: str) -> int | None:
    m = re.search(r"(?:^|\s)elfcorehdr=(\d+)K(?:\s|$)", cmdline)
    return int(m.group(1)) << 10 if m else None


def _backup_facts(loads, backup: Segment | None, purgatory: Segment, word_size: int) -> dict:
    """Where the low memory is copied to: the PT_LOAD whose data is not at its own address
    says so; the backup segment must hold it, and the purgatory must be told (its
    variables hold the destination and the size as aligned words)."""
    moved = [(paddr, filesz, offset) for offset, _, paddr, filesz, *_ in loads if offset != paddr]
    if len(moved) > 1:
        raise CaptureError(f"more than one PT_LOAD points away from its own address: {moved}")
    if not moved:
        return {"backup": None}
    src, size, dst = moved[0]
    buf = purgatory.buf
    words = {int.from_bytes(buf[i:i + word_size], "little") for i in range(0, len(buf) - word_size + 1, word_size)}
    return {
        "backup": (src, size, dst),
        "backup.segment_holds_it": backup is not None and backup.mem <= dst and dst + size <= backup.end,
        "backup.purgatory_knows_dst_and_size": dst in words and size in words,
    }


def diff(theirs: dict, ours: dict) -> dict[str, tuple]:
    """name -> (theirs, ours) for every fact that differs (a missing fact counts as None)."""
    return {k: (theirs.get(k), ours.get(k)) for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)}


def show(value) -> str:
    """A fact for a failure message: numbers in hex, as addresses are read."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return hex(value) if value > 9 else str(value)
    if isinstance(value, tuple):
        inner = ", ".join(show(v) for v in value)
        return f"({inner})"
    return repr(value)


def assert_same_but_intended(original: dict, ours: dict, ctx, intended: dict) -> None:
    """kexec-tools' facts (``original``) must equal kexec-py's (``ours``) once each entry of
    ``intended`` (name -> an object with ``undo(theirs, ours, ctx)`` and ``expected(ctx, original)``)
    has undone its difference on kexec-tools' side; an entry whose difference did not show where
    it says it would (or showed where it says it would not) fails too."""
    theirs, applied, stale = original, [], []
    for name, entry in intended.items():
        undone = entry.undo(theirs, ours, ctx)
        if undone is not None:
            applied.append(name)
            theirs = undone
        if (undone is not None) != entry.expected(ctx, original):
            stale.append(name)
    differences = diff(theirs, ours)
    assert not differences, "kexec-py differs from kexec-tools 2.0.25:\n" + "\n".join(
        f"  {k}:\n    kexec-tools: {show(t)}\n    kexec-py:    {show(o)}" for k, (t, o) in differences.items())
    assert not stale, (f"INTENDED differences {stale} did not show as expected here "
                       f"(applied: {applied}): fix the entry or drop it")
