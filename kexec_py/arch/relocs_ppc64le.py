"""Relocation recipes for the ppc64le purgatory, as data.

Type numbers and formulas are those of the 64-bit ELF V2 ABI for the Power
Architecture (little-endian): S is the symbol's placed address, A the addend,
P the placed address of the location; #lo(x) = x & 0xffff, #ha(x) = (x + 0x8000) >> 16
(the high half, adjusted for the sign of the low half that an addi adds back).

The purgatory is built for the medium code model (scripts/build-purgatory), and
uses only the types below:

* R_PPC64_REL24: ``bl``/``b`` to a function, PC-relative, in the instruction's
  LI field (bits 2-25). A call between functions that share the TOC goes to the
  callee's local entry point, past the two instructions that set r2 from r12
  (the symbol's st_other says how far: ``RelocRecipe.local_entry``).
* R_PPC64_TOC16_HA / _LO / _LO_DS: data addressed from the TOC pointer r2
  (``addis rX,r2,sym@toc@ha`` then ``addi``/``ld``/``std`` with ``sym@toc@l``):
  S - TOC, where the TOC is ``.TOC.``, which the object leaves to the linker:
  we fix it at TOC_OFFSET from the segment's start (``LINKER_SYMBOLS``), so
  these values do not depend on where the purgatory is linked. The DS form keeps
  the instruction's two low bits and needs a multiple of 4.
* R_PPC64_REL16_HA / _LO: a function's global entry prologue
  (``addis r2,r12,(.TOC.-func)@ha``) and entry.S's own r2 set-up, PC-relative.
* R_PPC64_ADDR64 / REL64 / REL32 for data, should any appear.

Instruction immediates are halfwords: in little-endian the 16-bit field is the
first two bytes of the word, which is where r_offset points for the 16-bit types.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kexec_py.plan.purgatory import S32 as _S32, RelocRecipe
from kexec_py.plan.purgatory import reloc_absolute as _absolute, reloc_nothing as _nothing
from kexec_py.plan.purgatory import reloc_pc_relative as _pc_relative

ELF_MACHINE = "EM_PPC64"

TOC_OFFSET = 0x8000          # .TOC. from the segment's start (the ABI's usual bias into a TOC)
LINKER_SYMBOLS: Mapping[str, int] = MappingProxyType({".TOC.": TOC_OFFSET})

R_PPC64_NONE = 0
R_PPC64_REL24 = 10
R_PPC64_ADDR64 = 38
R_PPC64_TOC16_LO = 48
R_PPC64_TOC16_HA = 50
R_PPC64_TOC16_LO_DS = 64
R_PPC64_REL64 = 44
R_PPC64_REL32 = 26
R_PPC64_REL16_LO = 250
R_PPC64_REL16_HA = 252

_OUT_OF_RANGE = 1 << 40         # a value no recipe's range admits: the link reports it


def _half_high(value: int) -> int:
    """#ha of a value that must fit in 32 signed bits (addis + addi/ld reach no further)."""
    return ((value + 0x8000) >> 16) & 0xFFFF if -(1 << 31) <= value < (1 << 31) else _OUT_OF_RANGE


def _lo(s: int, a: int, p: int) -> int:
    return (s + a) & 0xFFFF


def _ha(s: int, a: int, p: int) -> int:
    return _half_high(s + a)


def _pc_lo(s: int, a: int, p: int) -> int:
    return (s + a - p) & 0xFFFF


def _pc_ha(s: int, a: int, p: int) -> int:
    return _half_high(s + a - p)


def _lo_ds(s: int, a: int, p: int) -> int:
    value = (s + a) & 0xFFFF
    return value if value % 4 == 0 else _OUT_OF_RANGE


def _rel24(s: int, a: int, p: int) -> int:
    value = s + a - p
    return value if value % 4 == 0 else _OUT_OF_RANGE


def _ds_insert(word: int, value: int) -> int:
    """The DS field (bits 2-15) of a ld/std; its two low bits belong to the opcode."""
    return (word & 0x3) | (value & 0xFFFC)


def _li_insert(word: int, value: int) -> int:
    """The LI field (bits 2-25) of an I-form branch; AA and LK stay."""
    return (word & ~0x03FFFFFC) | (value & 0x03FFFFFC)


_U16 = (0, 1 << 16)

RELOCATIONS: Mapping[int, RelocRecipe] = MappingProxyType({
    R_PPC64_NONE: RelocRecipe("R_PPC64_NONE", 0, _nothing),
    R_PPC64_ADDR64: RelocRecipe("R_PPC64_ADDR64", 8, _absolute),
    R_PPC64_REL64: RelocRecipe("R_PPC64_REL64", 8, _pc_relative),
    R_PPC64_REL32: RelocRecipe("R_PPC64_REL32", 4, _pc_relative, _S32),
    R_PPC64_REL24: RelocRecipe("R_PPC64_REL24", 4, _rel24, (-(1 << 25), 1 << 25), _li_insert,
                               local_entry=True),
    R_PPC64_REL16_LO: RelocRecipe("R_PPC64_REL16_LO", 2, _pc_lo),
    R_PPC64_REL16_HA: RelocRecipe("R_PPC64_REL16_HA", 2, _pc_ha, _U16),
    # S relative to .TOC. (relative_to): the same values wherever the purgatory is linked
    R_PPC64_TOC16_LO: RelocRecipe("R_PPC64_TOC16_LO", 2, _lo, relative_to=".TOC."),
    R_PPC64_TOC16_HA: RelocRecipe("R_PPC64_TOC16_HA", 2, _ha, _U16, relative_to=".TOC."),
    R_PPC64_TOC16_LO_DS: RelocRecipe("R_PPC64_TOC16_LO_DS", 2, _lo_ds, _U16, _ds_insert,
                                     relative_to=".TOC."),
})
