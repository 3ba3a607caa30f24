"""The generic purgatory loader (kexec_py/plan/purgatory.py).

Layout and relocation results are checked against a computation made here
straight from pyelftools' view of the object, not through the loader.
"""

from __future__ import annotations

import array
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kexec_py.arch.relocs_x86_64 import ELF_MACHINE, RELOCATIONS
from kexec_py.errors import CorruptImage, KexecError, PlacementError, UsageError
from kexec_py.plan.purgatory import (
    SHA256_REGIONS_SIZE, PurgatoryObject, PurgatorySymbolError, RelocRecipe, load_purgatory,
    pack_sha256_regions, sha256_of_segments, store_sha256,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "kexec_py" / "data" / "purgatory" / "x86_64.o"
BASE_A = 0x2000_1000
BASE_B = 0x7ff4_3000


@pytest.fixture(scope="module")
def data() -> bytes:
    return SHIPPED.read_bytes()


@pytest.fixture(scope="module")
def obj():
    return load_purgatory("x86_64")


def parse(data: bytes, **kw) -> PurgatoryObject:
    return PurgatoryObject.from_bytes(data, machine=ELF_MACHINE, relocs=RELOCATIONS, **kw)


# --- an independent model of the object, from pyelftools -------------------------------


@dataclass
class Model:
    offsets: dict[int, int]        # section index -> offset in the segment
    bufsz: int
    memsz: int
    align: int
    sections: dict[int, object]
    symbols: list
    relocs: list                   # (section index, r_offset, type, symbol index, addend)


def model(data: bytes) -> Model:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    elf = ELFFile(io.BytesIO(data))
    secs = {i: elf.get_section(i) for i in range(elf.num_sections())}
    alloc = [i for i, s in secs.items() if s["sh_flags"] & 2]
    offsets, pos, align = {}, 0, 4096
    for nobits in (False, True):
        for i in alloc:
            if (secs[i]["sh_type"] == "SHT_NOBITS") != nobits:
                continue
            a = max(1, secs[i]["sh_addralign"])
            align = max(align, a)
            pos = -(-pos // a) * a
            offsets[i] = pos
            pos += secs[i]["sh_size"]
        if not nobits:
            bufsz = pos
    symbols = list(elf.get_section_by_name(".symtab").iter_symbols())
    relocs = [(s["sh_info"], r["r_offset"], r["r_info_type"], r["r_info_sym"], r["r_addend"])
              for s in secs.values() if isinstance(s, RelocationSection) and s["sh_info"] in offsets
              for r in s.iter_relocations()]
    return Model(offsets, bufsz, -(-pos // 4096) * 4096, align, secs, symbols, relocs)


def expected_value(m: Model, base: int, rel) -> tuple[int, int]:
    """(location offset in segment, value) for one relocation, by the psABI formulas."""
    shndx, r_offset, rtype, symi, addend = rel
    sym = m.symbols[symi]
    s = base + m.offsets[sym["st_shndx"]] + sym["st_value"]
    p = base + m.offsets[shndx] + r_offset
    return p - base, {1: s + addend, 2: s + addend - p, 4: s + addend - p}[rtype]


# --- layout ----------------------------------------------------------------------------


def test_layout_sizes(obj, data):
    m = model(data)
    assert (obj.bufsz, obj.memsz, obj.align) == (m.bufsz, m.memsz, m.align)
    assert obj.memsz % 4096 == 0 and obj.memsz >= obj.bufsz
    linked = obj.link(BASE_A)
    assert len(linked.buf) == obj.bufsz and linked.memsz == obj.memsz and linked.base == BASE_A


def test_sections_are_copied_and_only_relocation_sites_change(obj, data):
    m = model(data)
    linked = obj.link(BASE_A)
    sites = set()
    for rel in m.relocs:
        off, _ = expected_value(m, BASE_A, rel)
        sites.update(range(off, off + RELOCATIONS[rel[2]].size))
    for i, off in m.offsets.items():
        sec = m.sections[i]
        if sec["sh_type"] == "SHT_NOBITS":
            continue
        raw = sec.data()
        for k in range(len(raw)):
            if off + k not in sites:
                assert linked.buf[off + k] == raw[k], f"{sec.name}+{k:#x} changed"


def test_entry_is_purgatory_start(obj, data):
    m = model(data)
    start = next(s for s in m.symbols if s.name == "purgatory_start")
    linked = obj.link(BASE_B)
    assert linked.entry == BASE_B + m.offsets[start["st_shndx"]] + start["st_value"]
    assert linked.entry == linked.symbol_addr("purgatory_start")


# --- relocations -----------------------------------------------------------------------


def test_object_uses_only_known_relocations(data):
    types = {rel[2] for rel in model(data).relocs}
    assert types <= {1, 2, 4}, types        # R_X86_64_64, PC32, PLT32
    assert 1 in types and 2 in types


@pytest.mark.parametrize("base", [BASE_A, BASE_B, 0x1000, 0xFFFF_F000], ids=hex)
def test_relocations_match_psabi_formulas(obj, data, base):
    m = model(data)
    linked = obj.link(base)
    for rel in m.relocs:
        off, value = expected_value(m, base, rel)
        size = RELOCATIONS[rel[2]].size
        got = int.from_bytes(linked.buf[off:off + size], "little", signed=size == 4)
        want = value if size == 4 else value % (1 << 64)
        assert got == want, f"type {rel[2]} at {off:#x}"


def test_absolute_sites_move_with_base_and_relative_sites_do_not(obj, data):
    m = model(data)
    a, b = obj.link(BASE_A), obj.link(BASE_B)
    moved = same = 0
    for rel in m.relocs:
        off, _ = expected_value(m, BASE_A, rel)
        if rel[2] == 1:
            va = int.from_bytes(a.buf[off:off + 8], "little")
            vb = int.from_bytes(b.buf[off:off + 8], "little")
            assert vb - va == BASE_B - BASE_A
            moved += 1
        else:
            assert a.buf[off:off + 4] == b.buf[off:off + 4]
            same += 1
    assert moved and same
    assert b.entry - a.entry == BASE_B - BASE_A


@pytest.mark.parametrize("base", [BASE_A + 0x800, 0x123, -4096], ids=lambda b: f"{b:#x}")
def test_link_at_misaligned_base_raises(obj, base):
    with pytest.raises(PlacementError, match="multiple of"):
        obj.link(base)


# --- symbols ---------------------------------------------------------------------------


def test_symbol_round_trip(obj):
    linked = obj.link(BASE_A)
    digest = bytes(range(32))
    linked.set_symbol("sha256_digest", digest)
    assert linked.get_symbol("sha256_digest") == digest
    addr = linked.symbol_addr("sha256_digest")
    assert linked.buf[addr - BASE_A:addr - BASE_A + 32] == digest
    linked.set_int("backup_size", 0xA0000)
    assert linked.get_symbol("backup_size") == (0xA0000).to_bytes(8, "little")
    assert linked.get_int("serial_base") == 0x3F8
    # a fresh link is not affected
    assert obj.link(BASE_A).get_symbol("sha256_digest") == bytes(32)


def test_set_symbol_size_mismatch_raises(obj):
    linked = obj.link(BASE_A)
    with pytest.raises(PurgatorySymbolError, match=r"'skip_checks' is 1 bytes, not 4") as e:
        linked.set_symbol("skip_checks", b"\x01\x00\x00\x00")
    assert isinstance(e.value, KexecError)
    with pytest.raises(PurgatorySymbolError, match="sha256_digest"):
        linked.set_symbol("sha256_digest", bytes(31))


def test_unknown_symbol_raises(obj):
    linked = obj.link(BASE_A)
    for call in (lambda: linked.set_symbol("no_such_thing", b""), lambda: linked.get_symbol("no_such_thing"),
                 lambda: linked.symbol_addr("no_such_thing")):
        with pytest.raises(PurgatorySymbolError, match="no_such_thing"):
            call()
    with pytest.raises(PurgatorySymbolError, match="'gdt'"):     # local symbols are not the ABI
        linked.symbol_addr("gdt")


def test_nobits_symbol_has_an_address_but_no_bytes(obj):
    linked = obj.link(BASE_A)
    stack_end = linked.symbol_addr("stack_end")
    assert BASE_A + obj.bufsz < stack_end <= BASE_A + obj.memsz
    assert stack_end % 16 == 0
    with pytest.raises(PurgatorySymbolError, match="stack_end"):
        linked.set_symbol("stack_end", b"")


def test_set_int_range(obj):
    linked = obj.link(BASE_A)
    with pytest.raises(PurgatorySymbolError, match="serial_base"):
        linked.set_int("serial_base", 0x10000)


# --- bad objects -----------------------------------------------------------------------


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


BAD = {
    "empty": lambda d: b"",
    "not-elf": lambda d: b"hello, world" * 10,
    "magic-only": lambda d: d[:4],
    "truncated-header": lambda d: d[:40],
    "truncated-half": lambda d: d[:len(d) // 2],
    "truncated-last-byte": lambda d: d[:-1],
    "et-exec": lambda d: _patched(d, 16, "<H", 2),
    "et-dyn": lambda d: _patched(d, 16, "<H", 3),
    "wrong-machine": lambda d: _patched(d, 18, "<H", 183),          # EM_AARCH64
    "elf32-class": lambda d: d[:4] + b"\x01" + d[5:],
    "garbage-after-magic": lambda d: d[:4] + bytes(range(256)) * 4,
    "section-table-past-eof": lambda d: _patched(d, 0x28, "<Q", len(d) + 64),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_bytes_raise_corrupt_image(data, case):
    with pytest.raises(CorruptImage) as e:
        parse(BAD[case](data), name="purgatory test.o")
    assert "purgatory test.o" in str(e.value)


def test_wrong_machine_message(data):
    with pytest.raises(CorruptImage, match="EM_AARCH64, not EM_X86_64"):
        parse(_patched(data, 18, "<H", 183))


def _first_rela(data: bytes, section: str = ".rela.text") -> tuple[int, int]:
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    sec = elf.get_section_by_name(section)
    return sec["sh_offset"], sec["sh_entsize"]


def test_unknown_relocation_type_raises(data):
    off, _ = _first_rela(data)
    bad = bytearray(data)
    struct.pack_into("<I", bad, off + 8, 9)                       # r_info type -> R_X86_64_GOTPCREL
    with pytest.raises(CorruptImage, match=r"relocation type 9 \(R_X86_64_GOTPCREL\) is not supported"):
        parse(bytes(bad))


def test_recipes_limit_what_is_accepted(data):
    only_abs = {k: v for k, v in RELOCATIONS.items() if k == 1}
    with pytest.raises(CorruptImage, match="R_X86_64_PC32"):
        PurgatoryObject.from_bytes(data, machine=ELF_MACHINE, relocs=only_abs)


def test_undefined_symbol_raises(data):
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    symtab = elf.get_section_by_name(".symtab")
    index = next(i for i, s in enumerate(symtab.iter_symbols()) if s.name == "memcpy")
    bad = _patched(data, symtab["sh_offset"] + index * symtab["sh_entsize"] + 6, "<H", 0)   # st_shndx
    with pytest.raises(CorruptImage, match="undefined symbol 'memcpy'"):
        parse(bad)


def test_missing_entry_symbol_raises(data):
    with pytest.raises(CorruptImage, match="'no_entry_here'"):
        parse(data, entry_symbol="no_entry_here")


def test_load_purgatory_unknown_arch():
    with pytest.raises(UsageError, match="no purgatory"):
        load_purgatory("vax")
    with pytest.raises(UsageError):
        load_purgatory("../x86_64")


def test_importing_does_not_load_pyelftools():
    code = ("import sys, kexec_py.plan.purgatory, kexec_py.arch.relocs_x86_64; "
            "assert 'elftools' not in sys.modules, 'elftools imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- synthetic objects: 32-bit absolute relocations and REL sections -----------------------

TINY_S = """
        .text
        .globl purgatory_start
purgatory_start:
        movl    $target, %eax           # R_X86_64_32
        movq    $target, %rax           # R_X86_64_32S
        movabsq $target, %rax           # R_X86_64_64
        leaq    target(%rip), %rax      # R_X86_64_PC32
        ret
        .data
        .globl target
        .quad   0
target: .quad   0
"""


def _assemble(tmp_path: Path, source: str, *flags: str) -> bytes:
    gas = shutil.which("as")
    assert gas, "GNU as (binutils) is needed to build the test objects"
    src, out = tmp_path / "t.s", tmp_path / "t.o"
    src.write_text(source)
    subprocess.run([gas, *flags, "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def test_32bit_absolute_relocations_and_overflow(tmp_path):
    tiny = parse(_assemble(tmp_path, TINY_S, "--64"))
    low = tiny.link(0x10000)
    target = low.symbol_addr("target")
    text = bytes(low.buf[:32])
    assert struct.unpack_from("<I", text, 1)[0] == target              # movl imm32
    assert struct.unpack_from("<i", text, 8)[0] == target              # movq sign-extended imm32
    assert struct.unpack_from("<Q", text, 14)[0] == target             # movabs imm64
    assert struct.unpack_from("<i", text, 25)[0] == target - (0x10000 + 29)   # rip-relative
    # 0x8000_0000 still fits R_X86_64_32 but not 32S; 4 GiB fits neither.
    with pytest.raises(PlacementError, match="R_X86_64_32S"):
        tiny.link(0x8000_0000)
    with pytest.raises(PlacementError, match="R_X86_64_32 "):
        tiny.link(1 << 32)


I386_RELOCS = {
    1: RelocRecipe("R_386_32", 4, lambda s, a, p: s + a, (0, 1 << 32)),
    2: RelocRecipe("R_386_PC32", 4, lambda s, a, p: s + a - p, (-(1 << 31), 1 << 31)),
}

TINY_I386_S = """
        .text
        .globl purgatory_start
purgatory_start:
        movl    $target+8, %eax         # R_386_32, addend 8 kept in place
        call    helper                  # R_386_PC32, addend -4 kept in place
        ret
helper: ret
        .data
        .long   0
        .globl target
target: .long   0
"""


def test_rel_sections_read_addends_in_place(tmp_path):
    tiny = PurgatoryObject.from_bytes(_assemble(tmp_path, TINY_I386_S, "--32"), machine="EM_386",
                                      relocs=I386_RELOCS)
    linked = tiny.link(0x40000)
    assert struct.unpack_from("<I", linked.buf, 1)[0] == linked.symbol_addr("target") + 8
    assert struct.unpack_from("<i", linked.buf, 6)[0] == 11 - 10       # helper - end of call


# --- SHA-256 of the other segments ------------------------------------------------------


@dataclass(frozen=True)
class Seg:
    mem: int
    memsz: int
    buf: object


def _padded(seg: Seg) -> bytes:
    raw = memoryview(seg.buf).cast("B").tobytes()
    return raw + bytes(seg.memsz - len(raw))


def test_sha256_of_segments_matches_hashlib():
    words = array.array("I", range(1000))              # a non-byte memoryview: must be cast
    segs = [
        Seg(0x3000_0000, 5 * (1 << 20) + 7, b"\x01" * 4097),          # zero tail longer than a chunk
        Seg(0x1000, 0x3000, bytearray(b"abc") * 100),
        Seg(0x9000, 0, b""),                                          # left out
        Seg(0x2000_0000, 0xA0000, b""),                               # all zeros
        Seg(0x4000_0000, 4000, memoryview(words)),
        Seg(0x5000_0000, 3, memoryview(b"xyz")),
    ]
    regions, digest = sha256_of_segments(segs)
    ordered = sorted((s for s in segs if s.memsz), key=lambda s: s.mem)
    assert regions == [(s.mem, s.memsz) for s in ordered]
    assert digest == hashlib.sha256(b"".join(_padded(s) for s in ordered)).digest()


def test_sha256_of_no_segments():
    assert sha256_of_segments([]) == ([], hashlib.sha256(b"").digest())


def test_sha256_of_segments_rejects_buf_longer_than_memsz():
    with pytest.raises(PlacementError, match="memsz"):
        sha256_of_segments([Seg(0x1000, 4, b"12345")])


def test_pack_sha256_regions():
    table = pack_sha256_regions([(0x1000, 0x2000), (0xFFFF_FFFF_0000, 5)])
    assert len(table) == SHA256_REGIONS_SIZE == 256
    assert struct.unpack("<32Q", table)[:4] == (0x1000, 0x2000, 0xFFFF_FFFF_0000, 5)
    assert table[32:] == bytes(224)
    assert pack_sha256_regions([]) == bytes(256)
    big = pack_sha256_regions([(1, 2)], byteorder="big")
    assert big[:16] == (1).to_bytes(8, "big") + (2).to_bytes(8, "big")
    with pytest.raises(PlacementError, match="at most 16"):
        pack_sha256_regions([(i, 1) for i in range(17)])
    with pytest.raises(PlacementError):
        pack_sha256_regions([(-1, 1)])


def test_store_sha256_fills_both_symbols(obj):
    linked = obj.link(BASE_A)
    segs = [Seg(0x100000, 0x2000, b"kernel"), Seg(0x8000, 0x1000, b"setup")]
    digest = store_sha256(linked, segs)
    regions, want = sha256_of_segments(segs)
    assert digest == want == linked.get_symbol("sha256_digest")
    assert linked.get_symbol("sha256_regions") == pack_sha256_regions(regions)
    assert regions[0] == (0x8000, 0x1000)


# --- the x86_64 recipes as data -----------------------------------------------------------


def test_x86_64_recipes():
    s, a, p = 0x2000_1000, -4, 0x2000_0800
    table = {r.name: r for r in RELOCATIONS.values()}
    assert table["R_X86_64_64"].size == 8 and table["R_X86_64_64"].compute(s, a, p) == s + a
    for name in ("R_X86_64_PC32", "R_X86_64_PLT32"):
        assert table[name].size == 4 and table[name].compute(s, a, p) == s + a - p
    assert table["R_X86_64_32"].value_range == (0, 1 << 32)
    assert table["R_X86_64_32S"].value_range == (-(1 << 31), 1 << 31)
    assert table["R_X86_64_NONE"].size == 0
    with pytest.raises(TypeError):
        RELOCATIONS[99] = table["R_X86_64_64"]          # read-only mapping


def test_prehashed_first_segment_gives_the_same_digest(monkeypatch):
    """start_prehash hashes a buffer on another thread; the digest is the same whether that
    buffer ends up the lowest segment (its state is used, it is not read again), a later
    one, or not hashed ahead at all."""
    import os
    from types import SimpleNamespace as Seg

    from kexec_py.plan import purgatory as P
    big = memoryview(os.urandom(P._HASH_CHUNK + 12345))           # more than one hashing block
    small = b"kernel" * 1000
    for big_first, order in ((True, (0x1000000, 0x9000000)), (False, (0x9000000, 0x1000000))):
        segs = [Seg(mem=order[0], memsz=P._HASH_CHUNK + 16384, buf=big),
                Seg(mem=order[1], memsz=0x2000 * 4, buf=small)]
        P._prehashes.clear()
        plain = P.sha256_of_segments(segs)
        assert P.start_prehash(big) is big
        P._prehashed(big).state()                          # let the thread finish first
        hashed = []
        real = P._hash_into
        monkeypatch.setattr(P, "_hash_into", lambda h, view: (hashed.append(len(view)), real(h, view)))
        assert P.sha256_of_segments(segs) == plain
        assert (len(big) in hashed) == (not big_first)
        monkeypatch.setattr(P, "_hash_into", real)
    P._prehashes.clear()


@pytest.mark.parametrize("arch", ["x86_64", "i386", "arm64", "s390x"])
def test_shipped_parse_is_current_and_used(arch, monkeypatch):
    """data/purgatory/<arch>.json is the pyelftools parse of <arch>.o (scripts/build-purgatory
    writes it); load_purgatory takes it instead of parsing, and links the same bytes."""
    import importlib
    import json

    from kexec_py.plan import purgatory as P
    folder = P._purgatory_folder()
    data = folder.joinpath(f"{arch}.o").read_bytes()
    recipes = importlib.import_module(f"kexec_py.arch.relocs_{arch}")
    parsed = P.PurgatoryObject.from_bytes(data, machine=recipes.ELF_MACHINE, relocs=recipes.RELOCATIONS)
    shipped = json.loads(folder.joinpath(f"{arch}.json").read_bytes())
    assert shipped == json.loads(json.dumps(parsed.to_cache(data))), f"run scripts/build-purgatory {arch}"

    def no_parsing(*args, **kwargs):
        raise AssertionError("load_purgatory parsed the object instead of using its .json")
    monkeypatch.setattr(P.PurgatoryObject, "from_bytes", no_parsing)
    cached = P.load_purgatory(arch)
    base = 0x1000000
    a, b = cached.link(base), parsed.link(base)
    assert (a.buf, a.entry, a.memsz, cached.align) == (b.buf, b.entry, b.memsz, parsed.align)
    assert a.symbol_addr("sha256_digest") == b.symbol_addr("sha256_digest")


def test_purgatory_folder_reads_as_pathlib_does(tmp_path):
    """_DiskFile (pathlib kept off the crash-load path) against pathlib.Path: the same text,
    the same bytes, the same errors for a missing file and a directory."""
    from pathlib import Path

    from kexec_py.plan import purgatory as P
    folder = P._purgatory_folder()
    mine, theirs = folder.joinpath("x86_64.o"), Path(str(folder)).joinpath("x86_64.o")
    assert str(mine) == str(theirs) == os.fspath(mine)
    assert mine.read_bytes() == theirs.read_bytes()
    (tmp_path / "d").mkdir()
    for name in ("missing.o", "d"):
        for f in (P._DiskFile(str(tmp_path)).joinpath(name), tmp_path.joinpath(name)):
            with pytest.raises(FileNotFoundError if name == "missing.o" else IsADirectoryError):
                f.read_bytes()


def test_a_stale_or_damaged_shipped_parse_is_not_used():
    import importlib
    import json

    from kexec_py.plan import purgatory as P
    data = P._purgatory_folder().joinpath("x86_64.o").read_bytes()
    recipes = importlib.import_module("kexec_py.arch.relocs_x86_64").RELOCATIONS
    cache = json.loads(P._purgatory_folder().joinpath("x86_64.json").read_bytes())
    assert P.PurgatoryObject.from_cache(cache, data, relocs=recipes) is not None
    assert P.PurgatoryObject.from_cache(cache, data + b"\0", relocs=recipes) is None      # another object
    assert P.PurgatoryObject.from_cache({**cache, "format": 0}, data, relocs=recipes) is None
    assert P.PurgatoryObject.from_cache({**cache, "relocs": [[1, 0]]}, data, relocs=recipes) is None
    some_type = cache["relocs"][0][2]
    assert P.PurgatoryObject.from_cache(cache, data, relocs={k: v for k, v in recipes.items()
                                                             if k != some_type}) is None
