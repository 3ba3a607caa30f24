"""Relocation recipes for the arm64 purgatory, as data.

Type numbers and formulas are those of the ELF for the Arm 64-bit Architecture
(AArch64) ABI: S is the symbol's placed address, A the addend, P the placed
address of the location; Page(x) is x with its low 12 bits cleared. Data
relocations store the whole value; instruction relocations put a slice of the
value into the instruction's immediate field (``RelocRecipe.insert``), and
replace what the field held: with RELA objects the field carries no addend.

The purgatory is built for the small code model, so it needs ADRP + ADD/LDR/STR
pairs and B/BL; all of them are PC-relative within the purgatory, which is
linked page-aligned. Ranges are checked, so a bad placement is reported rather
than turned into a wild branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kexec_py.plan.purgatory import S32 as _S32, U32 as _U32, RelocRecipe
from kexec_py.plan.purgatory import reloc_absolute as _absolute, reloc_nothing as _nothing
from kexec_py.plan.purgatory import reloc_pc_relative as _pc_relative

ELF_MACHINE = "EM_AARCH64"

R_AARCH64_NONE = 0
R_AARCH64_ABS64 = 257
R_AARCH64_ABS32 = 258
R_AARCH64_PREL64 = 260
R_AARCH64_PREL32 = 261
R_AARCH64_LD_PREL_LO19 = 273
R_AARCH64_ADR_PREL_LO21 = 274
R_AARCH64_ADR_PREL_PG_HI21 = 275
R_AARCH64_ADR_PREL_PG_HI21_NC = 276
R_AARCH64_ADD_ABS_LO12_NC = 277
R_AARCH64_LDST8_ABS_LO12_NC = 278
R_AARCH64_TSTBR14 = 279
R_AARCH64_CONDBR19 = 280
R_AARCH64_JUMP26 = 282
R_AARCH64_CALL26 = 283
R_AARCH64_LDST16_ABS_LO12_NC = 284
R_AARCH64_LDST32_ABS_LO12_NC = 285
R_AARCH64_LDST64_ABS_LO12_NC = 286
R_AARCH64_LDST128_ABS_LO12_NC = 299


def _signed(bits: int) -> tuple[int, int]:
    return (-(1 << (bits - 1)), 1 << (bits - 1))


def _page(x: int) -> int:
    return x & ~0xFFF


def _page_delta(s: int, a: int, p: int) -> int:
    return _page(s + a) - _page(p)


def _field(shift: int, width: int, *, scale: int = 0):
    """insert(): put bits [scale, scale+width) of the value at bit ``shift`` of the word."""
    mask = ((1 << width) - 1) << shift

    def insert(word: int, value: int) -> int:
        return (word & ~mask) | ((((value >> scale) & ((1 << width) - 1)) << shift) & mask)
    return insert


def _adr_immediate(*, scale: int):
    """ADR/ADRP: immlo in bits 29-30, immhi in bits 5-23, of value >> scale."""
    def insert(word: int, value: int) -> int:
        imm = (value >> scale) & 0x1FFFFF
        return (word & ~0x60FFFFE0) | ((imm & 3) << 29) | ((imm >> 2) << 5)
    return insert


def _lo12(name: str, scale: int) -> RelocRecipe:
    """The low 12 bits of S+A, scaled by the access size, in an ADD/LDR/STR imm12 field."""
    return RelocRecipe(name, 4, _absolute, None, _field(10, 12 - scale, scale=scale))


def _branch(name: str, bits: int, shift: int) -> RelocRecipe:
    """A word-offset branch: (S+A-P) >> 2 in a ``bits``-wide field at bit ``shift``."""
    return RelocRecipe(name, 4, _pc_relative, _signed(bits + 2), _field(shift, bits, scale=2))


RELOCATIONS: Mapping[int, RelocRecipe] = MappingProxyType({
    R_AARCH64_NONE: RelocRecipe("R_AARCH64_NONE", 0, _nothing),
    R_AARCH64_ABS64: RelocRecipe("R_AARCH64_ABS64", 8, _absolute),
    R_AARCH64_ABS32: RelocRecipe("R_AARCH64_ABS32", 4, _absolute, _U32),
    R_AARCH64_PREL64: RelocRecipe("R_AARCH64_PREL64", 8, _pc_relative),
    R_AARCH64_PREL32: RelocRecipe("R_AARCH64_PREL32", 4, _pc_relative, _S32),
    R_AARCH64_LD_PREL_LO19: _branch("R_AARCH64_LD_PREL_LO19", 19, 5),
    R_AARCH64_ADR_PREL_LO21: RelocRecipe("R_AARCH64_ADR_PREL_LO21", 4, _pc_relative, _signed(21),
                                         _adr_immediate(scale=0)),
    R_AARCH64_ADR_PREL_PG_HI21: RelocRecipe("R_AARCH64_ADR_PREL_PG_HI21", 4, _page_delta, _signed(33),
                                            _adr_immediate(scale=12)),
    R_AARCH64_ADR_PREL_PG_HI21_NC: RelocRecipe("R_AARCH64_ADR_PREL_PG_HI21_NC", 4, _page_delta, None,
                                               _adr_immediate(scale=12)),
    R_AARCH64_ADD_ABS_LO12_NC: _lo12("R_AARCH64_ADD_ABS_LO12_NC", 0),
    R_AARCH64_LDST8_ABS_LO12_NC: _lo12("R_AARCH64_LDST8_ABS_LO12_NC", 0),
    R_AARCH64_LDST16_ABS_LO12_NC: _lo12("R_AARCH64_LDST16_ABS_LO12_NC", 1),
    R_AARCH64_LDST32_ABS_LO12_NC: _lo12("R_AARCH64_LDST32_ABS_LO12_NC", 2),
    R_AARCH64_LDST64_ABS_LO12_NC: _lo12("R_AARCH64_LDST64_ABS_LO12_NC", 3),
    R_AARCH64_LDST128_ABS_LO12_NC: _lo12("R_AARCH64_LDST128_ABS_LO12_NC", 4),
    R_AARCH64_TSTBR14: _branch("R_AARCH64_TSTBR14", 14, 5),
    R_AARCH64_CONDBR19: _branch("R_AARCH64_CONDBR19", 19, 5),
    R_AARCH64_JUMP26: _branch("R_AARCH64_JUMP26", 26, 0),
    R_AARCH64_CALL26: _branch("R_AARCH64_CALL26", 26, 0),
})
