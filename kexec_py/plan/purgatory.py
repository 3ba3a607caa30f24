"""The purgatory: the small program that runs between the old kernel and the new.

kexec_load needs userspace to supply it. It is shipped as a relocatable ELF
object (ET_REL, built by ``scripts/build-purgatory`` into
``kexec_py/data/purgatory/<arch>.o``) and linked here at the address the
planner picked for it:

* ``PurgatoryObject.from_bytes`` parses the object once (with pyelftools,
  imported lazily) into plain values: the layout of its allocated sections,
  its symbols and its relocations.
* ``PurgatoryObject.link(base)`` lays the sections out at ``base``, applies
  the relocations with the arch's recipes (data, see ``RelocRecipe``) and
  returns a ``LinkedPurgatory``: one segment's bytes plus its symbol table.
* ``LinkedPurgatory.set_symbol`` then fills the purgatory's variables by
  name (``sha256_digest``, ``entry64_regs``, ...), never by byte offset.

The layout follows kexec-tools' ``elf_rel_load``: allocated sections in
section-header order, those with file bytes first, then the NOBITS ones
(``.bss``), which the kernel zero-fills as the segment's ``memsz`` tail.

The SHA-256 helpers at the end compute what the purgatory checks before
it enters the new kernel: one digest over every other segment, each taken as
its bytes followed by zeros up to its ``memsz``.
"""

from __future__ import annotations

import hashlib
import io

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing (speed, issue 13)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

from kexec_py.errors import CorruptImage, ImageNotFound, KexecError, PlacementError, UsageError
from kexec_py.record import REQUIRED, Record

PAGE_SIZE = 4096

SHA256_REGION_COUNT = 16           # entries in the purgatory's sha256_regions table
SHA256_REGIONS_SIZE = SHA256_REGION_COUNT * 16   # {u64 start; u64 len} each

_HINT_REBUILD = "rebuild it with scripts/build-purgatory, or reinstall kexec-py"
CACHE_FORMAT = 1                   # of data/purgatory/<arch>.json, the parse of <arch>.o


class PurgatorySymbolError(CorruptImage):
    """A purgatory symbol is missing, or is not what the loader expects."""


class RelocRecipe(Record):
    """How to apply one relocation type.

    ``compute(S, A, P)`` gives the value to store, where S is the symbol's
    placed address, A the addend and P the placed address of the location.
    The value is checked against ``value_range`` (half-open, None = no check)
    and stored as ``size`` bytes in the object's byte order (0 = nothing to
    store, as for R_*_NONE).
    """

    _defaults = dict(
        name=REQUIRED,                  # str
        size=REQUIRED,                  # int
        compute=REQUIRED,               # Callable[[int, int, int], int]
        value_range=None,               # tuple[int, int] | None
        # For a value that goes into a bit field of an instruction (arm64 and the like):
        # insert(old_word, value) -> new_word. None: the value replaces the whole location.
        insert=None,                    # Callable[[int, int], int] | None
        # S is the function's local entry point, not its global one (the ELFv2 ABI's calls
        # between functions that share a TOC: st_other says how far in it is).
        local_entry=False,              # bool
        # S is taken relative to this linker-defined symbol (ppc64's TOC pointer, ".TOC."):
        # the value is then the same wherever the object is linked.
        relative_to=None,               # str | None
    )
    __slots__ = tuple(_defaults)


# The computations and value ranges most relocation types share (S, A, P as above).
U32 = (0, 1 << 32)
S32 = (-(1 << 31), 1 << 31)


def reloc_nothing(s: int, a: int, p: int) -> int:
    return 0


def reloc_absolute(s: int, a: int, p: int) -> int:
    return s + a


def reloc_pc_relative(s: int, a: int, p: int) -> int:
    return s + a - p


# --- parsed object -------------------------------------------------------------------


class _Section(Record):
    _defaults = dict(
        index=REQUIRED,                 # int
        name=REQUIRED,                  # str
        offset=REQUIRED,                # int  from the start of the segment
        size=REQUIRED,                  # int
        nobits=REQUIRED,                # bool
        data=REQUIRED,                  # bytes  b"" for NOBITS
    )
    __slots__ = tuple(_defaults)


class _Symbol(Record):
    _defaults = dict(
        name=REQUIRED,                  # str
        value=REQUIRED,                 # int  st_value: offset inside its section
        size=REQUIRED,                  # int
        shndx=REQUIRED,                 # int | str  section index, or "SHN_UNDEF" / "SHN_ABS" / "SHN_COMMON"
        is_global=REQUIRED,             # bool
        local_entry=0,                  # int  ELFv2: bytes from the function's global entry to its local one
    )
    __slots__ = tuple(_defaults)


class _Reloc(Record):
    _defaults = dict(
        section=REQUIRED,               # _Section  the section being patched
        offset=REQUIRED,                # int  r_offset inside it
        type=REQUIRED,                  # int
        target=REQUIRED,                # int  the symbol's offset in the segment, or its absolute value
        absolute=REQUIRED,              # bool  True: S = target; False: S = base + target
        addend=REQUIRED,                # int | None  None for REL: the addend is read from the location
        where=REQUIRED,                 # str  for messages: ".rela.text[12]"
    )
    __slots__ = tuple(_defaults)


class PurgatoryObject:
    """A parsed purgatory object, ready to be linked at any suitably aligned base.

    ``bufsz`` is the size of the file-backed part of the layout, ``memsz`` that plus
    the NOBITS sections, rounded up to a page, and ``align`` the alignment the base
    address needs (the largest section alignment, at least a page).
    """

    __slots__ = ("name", "bufsz", "memsz", "align", "byteorder",
                 "_sections", "_symbols", "_relocs", "_recipes", "_entry")

    def __init__(self, *, name: str, layout: _Layout, byteorder: str, symbols: tuple[_Symbol, ...],
                 relocs: tuple[_Reloc, ...], recipes: Mapping[int, RelocRecipe], entry: int):
        self.name = name
        self.bufsz = layout.bufsz
        self.memsz = layout.memsz
        self.align = layout.align
        self.byteorder = byteorder
        self._sections = layout.sections
        self._symbols = symbols
        self._relocs = relocs
        self._recipes = recipes
        self._entry = entry

    @classmethod
    def from_bytes(cls, data: bytes, *, machine: str, relocs: Mapping[int, RelocRecipe],
                   name: str = "purgatory", entry_symbol: str = "purgatory_start",
                   linker_symbols: Mapping[str, int] | None = None) -> PurgatoryObject:
        """Parse an ET_REL object for ``machine`` (pyelftools' name, e.g. "EM_X86_64").

        ``linker_symbols``: symbols the object leaves undefined for the linker to place
        (ppc64's ".TOC."), each at a fixed offset from the start of the segment.

        Raises CorruptImage (naming ``name``) if the bytes are not such an object or
        are inconsistent: truncated, wrong type or machine, relocation types missing
        from ``relocs``, undefined symbols, no global ``entry_symbol``.
        """
        from kexec_py.image.elf import elf_errors

        try:
            return _parse(cls, bytes(data), name=name, machine=machine, recipes=relocs,
                          entry_symbol=entry_symbol, linker_symbols=linker_symbols or {})
        except KexecError:
            raise
        except elf_errors() as e:
            raise CorruptImage(f"{name}: not a usable ELF object: {e}", _HINT_REBUILD) from e

    def to_cache(self, data: bytes) -> dict:
        """This parse as plain JSON data, tied to the object bytes ``data`` it came from."""
        return {
            "format": CACHE_FORMAT, "object_sha256": hashlib.sha256(data).hexdigest(),
            "byteorder": self.byteorder, "bufsz": self.bufsz, "memsz": self.memsz, "align": self.align,
            "entry": self._entry,
            "sections": [[s.index, s.name, s.offset, s.size, s.nobits, s.data.hex()]
                         for s in self._sections.values()],
            "symbols": [[y.name, y.value, y.size, y.shndx, y.is_global] for y in self._symbols],
            "relocs": [[r.section.index, r.offset, r.type, r.target, r.absolute, r.addend, r.where]
                       for r in self._relocs],
        }

    @classmethod
    def from_cache(cls, cache: dict, data: bytes, *, relocs: Mapping[int, RelocRecipe],
                   name: str = "purgatory") -> PurgatoryObject | None:
        """The object ``to_cache`` described, if ``cache`` was made from these very bytes
        and every relocation still has a recipe that fits; None otherwise (parse it then)."""
        try:
            if cache["format"] != CACHE_FORMAT or cache["object_sha256"] != hashlib.sha256(data).hexdigest():
                return None
            sections = {i: _Section(i, n, off, size, nobits, bytes.fromhex(hexdata))
                        for i, n, off, size, nobits, hexdata in cache["sections"]}
            symbols = tuple(_Symbol(n, value, size, shndx, is_global)
                            for n, value, size, shndx, is_global in cache["symbols"])
            out = []
            for index, offset, rtype, target, absolute, addend, where in cache["relocs"]:
                sec, recipe = sections[index], relocs.get(rtype)
                if recipe is None or offset + recipe.size > sec.size:
                    return None
                out.append(_Reloc(sec, offset, rtype, target, absolute, addend, where))
            layout = _Layout(sections, cache["bufsz"], cache["memsz"], cache["align"])
            return cls(name=name, layout=layout, byteorder=cache["byteorder"], symbols=symbols,
                       relocs=tuple(out), recipes=relocs, entry=cache["entry"])
        except (KeyError, TypeError, ValueError):
            return None

    def link(self, base: int) -> LinkedPurgatory:
        """Place the purgatory at physical address ``base`` and relocate it."""
        if base < 0 or base % self.align:
            raise PlacementError(
                f"{self.name}: cannot link at {base:#x}: the address must be a multiple of {self.align:#x}")
        buf = bytearray(self.bufsz)
        for sec in self._sections.values():
            if not sec.nobits:
                buf[sec.offset:sec.offset + sec.size] = sec.data
        for rel in self._relocs:
            self._apply(buf, base, rel)
        symbols = {sym.name: sym for sym in self._symbols if sym.is_global and sym.name}
        return LinkedPurgatory(name=self.name, base=base, entry=base + self._entry, memsz=self.memsz,
                               buf=buf, byteorder=self.byteorder, symbols=symbols,
                               sections=self._sections)

    def _apply(self, buf: bytearray, base: int, rel: _Reloc) -> None:
        recipe = self._recipes[rel.type]          # from_bytes checked it exists and fits
        if recipe.size == 0:
            return
        loc = rel.section.offset + rel.offset
        addend = rel.addend
        if addend is None:                        # REL: the addend is stored in place
            addend = int.from_bytes(buf[loc:loc + recipe.size], self.byteorder, signed=True)
        s = rel.target if rel.absolute else base + rel.target
        value = recipe.compute(s, addend, base + loc)
        if recipe.value_range is not None:
            lo, hi = recipe.value_range
            if not lo <= value < hi:
                raise PlacementError(
                    f"{self.name}: {rel.where}: {recipe.name} value {value:#x} does not fit in "
                    f"{recipe.size} bytes when linked at {base:#x}",
                    "place the purgatory lower in memory")
        if recipe.insert is not None:
            value = recipe.insert(int.from_bytes(buf[loc:loc + recipe.size], self.byteorder), value)
        buf[loc:loc + recipe.size] = (value % (1 << (8 * recipe.size))).to_bytes(recipe.size, self.byteorder)

    def __repr__(self) -> str:
        return (f"PurgatoryObject({self.name!r}, bufsz={self.bufsz:#x}, memsz={self.memsz:#x}, "
                f"align={self.align:#x})")


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


class _Layout(Record):
    _defaults = dict(
        sections=REQUIRED,              # Mapping[int, _Section]  by section index: only the allocated ones
        bufsz=REQUIRED,                 # int
        memsz=REQUIRED,                 # int
        align=REQUIRED,                 # int
    )
    __slots__ = tuple(_defaults)


def _parse(cls: type[PurgatoryObject], data: bytes, *, name: str, machine: str,
           recipes: Mapping[int, RelocRecipe], entry_symbol: str,
           linker_symbols: Mapping[str, int]) -> PurgatoryObject:
    from elftools.elf.elffile import ELFFile

    if data[:4] != b"\x7fELF":
        raise CorruptImage(f"{name}: not an ELF file", _HINT_REBUILD)
    elf = ELFFile(io.BytesIO(data))
    if elf["e_type"] != "ET_REL":
        raise CorruptImage(f"{name}: ELF type is {elf['e_type']}, not ET_REL (a relocatable object)",
                           _HINT_REBUILD)
    if elf["e_machine"] != machine:
        raise CorruptImage(f"{name}: built for {elf['e_machine']}, not {machine}", _HINT_REBUILD)
    if elf["e_shoff"] + elf["e_shnum"] * elf["e_shentsize"] > len(data):
        raise CorruptImage(f"{name}: truncated: the section headers end past the file's "
                           f"{len(data)} bytes", _HINT_REBUILD)
    headers = [elf.get_section(i) for i in range(elf.num_sections())]
    layout = _lay_out(headers, data, name)
    symtab_index, symbols = _read_symbols(headers, name)
    relocs = _read_relocs(elf, headers, layout.sections, symtab_index, symbols, recipes, name, linker_symbols)

    entries = [sym for sym in symbols if sym.name == entry_symbol and sym.is_global]
    if len(entries) != 1 or entries[0].shndx not in layout.sections:
        raise CorruptImage(f"{name}: no entry point: the global symbol {entry_symbol!r} is missing",
                           _HINT_REBUILD)
    entry = layout.sections[entries[0].shndx].offset + entries[0].value
    return cls(name=name, layout=layout, byteorder="little" if elf.little_endian else "big",
               symbols=symbols, relocs=relocs, recipes=recipes, entry=entry)


def _lay_out(headers: Sequence, data: bytes, name: str) -> _Layout:
    """Allocated sections in header order: file-backed ones first, then NOBITS."""
    alloc = [(i, s) for i, s in enumerate(headers) if s["sh_flags"] & 0x2]        # SHF_ALLOC
    ordered = ([(i, s) for i, s in alloc if s["sh_type"] != "SHT_NOBITS"] +
               [(i, s) for i, s in alloc if s["sh_type"] == "SHT_NOBITS"])
    sections: dict[int, _Section] = {}
    offset = bufsz = 0
    max_align = 1
    for i, s in ordered:
        nobits = s["sh_type"] == "SHT_NOBITS"
        align = max(s["sh_addralign"], 1)            # 0 means no constraint
        max_align = max(max_align, align)
        offset = _align_up(offset, align)
        size = s["sh_size"]
        contents = b""
        if not nobits:
            start = s["sh_offset"]
            if start + size > len(data):
                raise CorruptImage(f"{name}: truncated: section {s.name} ends at {start + size:#x}, "
                                   f"past the file's {len(data):#x} bytes", _HINT_REBUILD)
            contents = data[start:start + size]
        sections[i] = _Section(i, s.name, offset, size, nobits, contents)
        offset += size
        if not nobits:
            bufsz = offset
    return _Layout(sections, bufsz, _align_up(offset, PAGE_SIZE), max(max_align, PAGE_SIZE))


def _read_symbols(headers: Sequence, name: str) -> tuple[int, tuple[_Symbol, ...]]:
    symtabs = [i for i, s in enumerate(headers) if s["sh_type"] == "SHT_SYMTAB"]
    if len(symtabs) != 1:
        raise CorruptImage(f"{name}: expected one symbol table, found {len(symtabs)}", _HINT_REBUILD)
    symbols = tuple(
        _Symbol(name=sym.name, value=sym["st_value"], size=sym["st_size"], shndx=sym["st_shndx"],
                is_global=sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK"),
                local_entry=_local_entry_offset(sym["st_other"]))
        for sym in headers[symtabs[0]].iter_symbols())
    for sym in symbols:
        if sym.shndx == "SHN_COMMON":
            raise CorruptImage(f"{name}: symbol {sym.name!r} is a common symbol (build with -fno-common)",
                               _HINT_REBUILD)
    return symtabs[0], symbols


def _local_entry_offset(st_other) -> int:
    """The ELFv2 ABI's local entry offset, from st_other bits 5-7 (pyelftools' ``local``,
    which it decodes for EM_PPC64 only): 0 for 0 and 1, else 4 << (value - 2) bytes."""
    local = st_other.get("local", 0) if hasattr(st_other, "get") else 0
    return 0 if local < 2 else 4 << (local - 2)


def _read_relocs(elf, headers: Sequence, placed: Mapping[int, _Section], symtab_index: int,
                 symbols: tuple[_Symbol, ...], recipes: Mapping[int, RelocRecipe],
                 name: str, linker_symbols: Mapping[str, int]) -> tuple[_Reloc, ...]:
    """Every relocation of a loaded section, checked and with its symbol resolved."""
    from elftools.elf.descriptions import describe_reloc_type

    relocs: list[_Reloc] = []
    for s in headers:
        if s["sh_type"] not in ("SHT_RELA", "SHT_REL"):
            continue
        target = placed.get(s["sh_info"])
        if target is None:
            continue                      # relocates something not loaded (debug info)
        if target.nobits:
            raise CorruptImage(f"{name}: {s.name} relocates {target.name}, which has no bytes",
                               _HINT_REBUILD)
        if s["sh_link"] != symtab_index:
            raise CorruptImage(f"{name}: {s.name} does not use the symbol table", _HINT_REBUILD)
        rela = s["sh_type"] == "SHT_RELA"
        for n, r in enumerate(s.iter_relocations()):
            where, rtype, offset = f"{s.name}[{n}]", r["r_info_type"], r["r_offset"]
            recipe = recipes.get(rtype)
            if recipe is None:
                raise CorruptImage(f"{name}: {where}: relocation type {rtype} "
                                   f"({describe_reloc_type(rtype, elf)}) is not supported", _HINT_REBUILD)
            if offset + recipe.size > target.size:
                raise CorruptImage(f"{name}: {where}: {recipe.name} at {offset:#x} is outside "
                                   f"{target.name} ({target.size:#x} bytes)", _HINT_REBUILD)
            value, absolute = _resolve(symbols, placed, r["r_info_sym"], where, name, linker_symbols)
            if recipe.local_entry and not absolute:
                value += symbols[r["r_info_sym"]].local_entry
            if recipe.relative_to is not None:
                if absolute or recipe.relative_to not in linker_symbols:
                    raise CorruptImage(f"{name}: {where}: {recipe.name} needs a placed symbol and "
                                       f"{recipe.relative_to!r}", _HINT_REBUILD)
                value, absolute = value - linker_symbols[recipe.relative_to], True
            relocs.append(_Reloc(target, offset, rtype, value, absolute,
                                 r["r_addend"] if rela else None, where))
    return tuple(relocs)


def _resolve(symbols: tuple[_Symbol, ...], placed: Mapping[int, _Section], index: int,
             where: str, name: str, linker_symbols: Mapping[str, int]) -> tuple[int, bool]:
    """Where relocation symbol ``index`` lands: (offset in the segment, False) or
    (absolute value, True)."""
    if index >= len(symbols):
        raise CorruptImage(f"{name}: {where} names symbol {index}, past the symbol table", _HINT_REBUILD)
    if index == 0:
        return 0, True                                  # STN_UNDEF: S = 0
    sym = symbols[index]
    label = repr(sym.name) if sym.name else f"#{index}"
    if sym.shndx == "SHN_ABS":
        return sym.value, True
    if sym.shndx == "SHN_UNDEF" and sym.name in linker_symbols:
        return linker_symbols[sym.name], False
    if sym.shndx == "SHN_UNDEF":
        raise CorruptImage(f"{name}: {where} refers to the undefined symbol {label}",
                           "the purgatory must be self-contained: " + _HINT_REBUILD)
    sec = placed.get(sym.shndx) if isinstance(sym.shndx, int) else None
    if sec is None:
        raise CorruptImage(f"{name}: {where} refers to symbol {label} in a section that is not loaded "
                           f"({sym.shndx})", _HINT_REBUILD)
    return sec.offset + sym.value, False


# --- linked image --------------------------------------------------------------------


class LinkedPurgatory:
    """The purgatory relocated at ``base``: the bytes of one segment and its symbols.

    ``buf`` holds the file-backed part (``bufsz`` bytes); the segment's ``memsz``
    also covers the zero-filled ``.bss``. ``entry`` is where kexec jumps.
    """

    __slots__ = ("name", "base", "entry", "memsz", "buf", "byteorder", "_symbols", "_sections")

    def __init__(self, *, name: str, base: int, entry: int, memsz: int, buf: bytearray,
                 byteorder: str, symbols: Mapping[str, _Symbol], sections: Mapping[int, _Section]):
        self.name = name
        self.base = base
        self.entry = entry
        self.memsz = memsz
        self.buf = buf
        self.byteorder = byteorder
        self._symbols = symbols
        self._sections = sections

    @property
    def bufsz(self) -> int:
        return len(self.buf)

    def _lookup(self, name: str) -> tuple[_Symbol, _Section | None]:
        sym = self._symbols.get(name)
        if sym is None or sym.shndx == "SHN_UNDEF":
            raise PurgatorySymbolError(f"{self.name}: has no global symbol {name!r}", _HINT_REBUILD)
        sec = self._sections.get(sym.shndx) if isinstance(sym.shndx, int) else None
        if sym.shndx != "SHN_ABS" and sec is None:
            raise PurgatorySymbolError(f"{self.name}: symbol {name!r} is not in a loaded section",
                                       _HINT_REBUILD)
        return sym, sec

    def symbol_addr(self, name: str) -> int:
        """The physical address of a global symbol once the segment is loaded."""
        sym, sec = self._lookup(name)
        if sec is None:
            return sym.value
        return self.base + sec.offset + sym.value

    def _span(self, name: str, size: int | None) -> slice:
        sym, sec = self._lookup(name)
        if sec is None or sec.nobits:
            where = "has no bytes in the file (.bss)" if sec is not None else "is an absolute symbol"
            raise PurgatorySymbolError(f"{self.name}: symbol {name!r} {where}; it cannot be read or set",
                                       _HINT_REBUILD)
        if size is not None and size != sym.size:
            raise PurgatorySymbolError(
                f"{self.name}: symbol {name!r} is {sym.size} bytes, not {size}",
                "the purgatory and kexec-py disagree: " + _HINT_REBUILD)
        start = sec.offset + sym.value
        if start + sym.size > len(self.buf):
            raise PurgatorySymbolError(f"{self.name}: symbol {name!r} runs past its section",
                                       _HINT_REBUILD)
        return slice(start, start + sym.size)

    def get_symbol(self, name: str) -> bytes:
        """The current bytes of a global data symbol (all ``st_size`` of them)."""
        return bytes(self.buf[self._span(name, None)])

    def set_symbol(self, name: str, value: bytes) -> None:
        """Overwrite a global data symbol; ``value`` must be exactly ``st_size`` bytes."""
        self.buf[self._span(name, len(value))] = value

    def set_int(self, name: str, value: int) -> None:
        """Store an unsigned integer in a symbol, in the object's byte order and at its size."""
        sym, _ = self._lookup(name)
        if value < 0 or value >= 1 << (8 * sym.size):
            raise PurgatorySymbolError(f"{self.name}: {value:#x} does not fit in {name!r} "
                                       f"({sym.size} bytes)")
        self.set_symbol(name, value.to_bytes(sym.size, self.byteorder))

    def get_int(self, name: str) -> int:
        return int.from_bytes(self.get_symbol(name), self.byteorder)

    def __repr__(self) -> str:
        return (f"LinkedPurgatory({self.name!r}, base={self.base:#x}, entry={self.entry:#x}, "
                f"bufsz={self.bufsz:#x}, memsz={self.memsz:#x})")


# --- loading the shipped objects -----------------------------------------------------


def load_purgatory(arch: str) -> PurgatoryObject:
    """Parse the purgatory shipped for ``arch`` (``kexec_py/data/purgatory/<arch>.o``).

    The relocation recipes and ELF machine come from ``kexec_py.arch.relocs_<arch>``
    (``RELOCATIONS`` and ``ELF_MACHINE``). The parse itself is shipped next to the
    object (``<arch>.json``, written by scripts/build-purgatory), which spares every
    load importing pyelftools; it is used only when it was made from these very bytes.
    """
    import importlib

    if not arch.replace("_", "").isalnum() or not arch.isascii():
        raise UsageError(f"no purgatory for architecture {arch!r}")
    try:
        recipes = importlib.import_module(f"kexec_py.arch.relocs_{arch}")
    except ModuleNotFoundError as e:
        raise UsageError(f"no purgatory for architecture {arch!r}",
                         "kexec_load needs one; try --kexec-file-syscall") from e
    folder = _purgatory_folder()
    resource = folder.joinpath(f"{arch}.o")
    try:
        data = resource.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as e:
        raise ImageNotFound(f"the {arch} purgatory is missing from the installation ({resource})",
                            _HINT_REBUILD) from e
    name = f"purgatory {arch}.o"
    cache = _read_cache(folder.joinpath(f"{arch}.json"))
    obj = cache and PurgatoryObject.from_cache(cache, data, relocs=recipes.RELOCATIONS, name=name)
    return obj or PurgatoryObject.from_bytes(data, machine=recipes.ELF_MACHINE, relocs=recipes.RELOCATIONS,
                                             name=name, linker_symbols=getattr(recipes, "LINKER_SYMBOLS", None))


class _DiskFile:
    """The part of pathlib.Path the purgatory loader uses (joinpath, read_bytes, str), for
    speed: pathlib imports urllib.parse and ipaddress, about 3 ms of a crash load (issue 13).
    tests/plan/test_purgatory.py compares it with pathlib.Path."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def joinpath(self, *names: str) -> _DiskFile:
        import os
        return _DiskFile(os.path.join(self.path, *names))

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def __str__(self) -> str:
        return self.path

    __fspath__ = __str__


def _purgatory_folder():
    """kexec_py/data/purgatory: a _DiskFile when the package is a directory on disk (importing
    importlib.resources costs a kexec_load several milliseconds), else through it (a zip)."""
    import os

    import kexec_py
    here = os.path.dirname(kexec_py.__file__ or "")
    if os.path.isdir(os.path.join(here, "data", "purgatory")):
        return _DiskFile(os.path.join(here, "data", "purgatory"))
    import importlib.resources
    return importlib.resources.files("kexec_py").joinpath("data", "purgatory")


def _read_cache(resource) -> dict | None:
    import json
    try:
        cache = json.loads(resource.read_bytes())
    except (OSError, ValueError):
        return None
    return cache if isinstance(cache, dict) else None


def write_cache(arch: str, path=None) -> None:
    """Write ``<arch>.json`` next to the object at ``path`` (default: the shipped one),
    parsed the slow way, with pyelftools."""
    import importlib
    import json
    from pathlib import Path

    obj_path = Path(path) if path else Path(str(_purgatory_folder().joinpath(f"{arch}.o")))
    recipes = importlib.import_module(f"kexec_py.arch.relocs_{arch}")
    data = obj_path.read_bytes()
    obj = PurgatoryObject.from_bytes(data, machine=recipes.ELF_MACHINE, relocs=recipes.RELOCATIONS,
                                     name=f"purgatory {arch}.o",
                                     linker_symbols=getattr(recipes, "LINKER_SYMBOLS", None))
    cache = obj.to_cache(data)
    lines = []
    for key, value in cache.items():           # one line per field, per section, symbol, relocation
        if isinstance(value, list):
            rows = ",\n".join("  " + json.dumps(row) for row in value)
            lines.append(f"{json.dumps(key)}: [\n{rows}\n ]")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)}")
    obj_path.with_suffix(".json").write_text("{\n " + ",\n ".join(lines) + "\n}\n")


# --- SHA-256 over the other segments -------------------------------------------------


if TYPE_CHECKING:      # for type checkers only: importing typing costs a kexec_load ~2 ms (issue 13)
    from typing import Protocol

    class HashedSegment(Protocol):
        """What sha256_of_segments needs from a segment (plan.Segment fits)."""

        @property
        def mem(self) -> int: ...
        @property
        def memsz(self) -> int: ...
        @property
        def buf(self) -> bytes | bytearray | memoryview: ...


_HASH_CHUNK = 16 << 20        # feed hashlib 16 MiB at a time (it drops the GIL meanwhile)
_ZEROS = bytes(1 << 20)


def _bytes_view(buf) -> memoryview:
    view = memoryview(buf)
    return view if view.ndim == 1 and view.itemsize == 1 else view.cast("B")


def _hash_into(h, view: memoryview) -> None:
    for start in range(0, len(view), _HASH_CHUNK):
        h.update(view[start:start + _HASH_CHUNK])


class _Prehash:
    """The SHA-256 state after one whole buffer, computed on a thread of its own."""

    def __init__(self, buf):
        import threading
        self.buf = buf
        self._h = hashlib.sha256()
        self._thread = threading.Thread(target=_hash_into, args=(self._h, _bytes_view(buf)),
                                        name="kexec-py prehash", daemon=True)
        self._thread.start()

    def state(self):
        """A copy of the finished state, to go on hashing from."""
        self._thread.join()
        return self._h.copy()


_prehashes: list[_Prehash] = []        # one load per process: the latest only
_PREHASH_MIN = 1 << 20                  # below this a thread saves less than it costs


def start_prehash(buf):
    """Start hashing ``buf`` on another CPU while the load is planned, and return it.

    The purgatory's digest is one SHA-256 over the segments in address order, so it
    can start from this state when ``buf`` becomes the lowest segment, as the initrd
    does in the x86 layouts (placed last, top-down); otherwise the digest is computed
    from the start as usual. Either way it is the same digest."""
    if len(buf) >= _PREHASH_MIN and _prehashed(buf) is None:
        _prehashes[:] = [_Prehash(buf)]
    return buf


def _prehashed(buf):
    for p in _prehashes:
        if p.buf is buf:
            return p
    return None


def sha256_of_segments(segments: Iterable[HashedSegment]) -> tuple[list[tuple[int, int]], bytes]:
    """The regions table and the digest the purgatory checks.

    Each segment is hashed as its ``buf`` followed by ``memsz - len(buf)`` zero bytes
    (what the kernel leaves in memory), in ascending ``mem`` order, as one message.
    Segments with ``memsz == 0`` are left out. Returns ``([(mem, memsz), ...], digest)``.
    Buffers are never copied: hashlib reads memoryview slices of them, in large blocks;
    a first segment whose hash ``start_prehash`` began is not read again.
    """
    h = None
    regions: list[tuple[int, int]] = []
    zeros = memoryview(_ZEROS)
    for seg in sorted(segments, key=lambda s: s.mem):
        if seg.memsz == 0:
            continue
        view = _bytes_view(seg.buf)
        if len(view) > seg.memsz:
            raise PlacementError(f"segment at {seg.mem:#x} has {len(view):#x} bytes but memsz "
                                 f"{seg.memsz:#x}")
        if h is None and (pre := _prehashed(seg.buf)) is not None:
            h = pre.state()
        else:
            if h is None:
                h = hashlib.sha256()
            _hash_into(h, view)
        pad = seg.memsz - len(view)
        while pad:
            n = min(pad, len(zeros))
            h.update(zeros[:n])
            pad -= n
        regions.append((seg.mem, seg.memsz))
    return regions, (h or hashlib.sha256()).digest()


def pack_sha256_regions(regions: Sequence[tuple[int, int]], *, byteorder: str = "little") -> bytes:
    """The 256-byte ``sha256_regions`` table: 16 × {u64 start; u64 len}, unused entries zero."""
    if len(regions) > SHA256_REGION_COUNT:
        raise PlacementError(f"{len(regions)} segments to check, but the purgatory can hash at most "
                             f"{SHA256_REGION_COUNT}")
    out = bytearray(SHA256_REGIONS_SIZE)
    for n, (start, length) in enumerate(regions):
        if not (0 <= start < 1 << 64 and 0 <= length < 1 << 64):
            raise PlacementError(f"sha256 region {n} ({start:#x}, {length:#x}) is not a 64-bit range")
        out[16 * n:16 * n + 8] = start.to_bytes(8, byteorder)
        out[16 * n + 8:16 * n + 16] = length.to_bytes(8, byteorder)
    return bytes(out)


def store_sha256(purgatory: LinkedPurgatory, segments: Iterable[HashedSegment]) -> bytes:
    """Hash ``segments`` (everything but the purgatory's own) and store the regions
    table and digest in ``sha256_regions`` / ``sha256_digest``. Returns the digest."""
    regions, digest = sha256_of_segments(segments)
    purgatory.set_symbol("sha256_regions", pack_sha256_regions(regions, byteorder=purgatory.byteorder))
    purgatory.set_symbol("sha256_digest", digest)
    return digest


if __name__ == "__main__":      # python3 -m kexec_py.plan.purgatory ARCH [OBJECT]: write its .json
    import sys
    write_cache(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
