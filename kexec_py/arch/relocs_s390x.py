"""Relocation recipes for the s390x purgatory, as data.

Type numbers and formulas are those of the s390x ELF ABI supplement (big-endian): S is
the symbol's placed address, A the addend, P the placed address of the location. The
"DBL" types count halfwords: the PC-relative operand of larl, brasl, jg and the relative
branches is (S + A - P) / 2, and must come out even. The purgatory is built PC-relative
(scripts/build-purgatory), so it uses PC32DBL (larl), PLT32DBL (brasl to a function; a
self-contained object has no PLT, so L = S) and PC16DBL (a short relative branch to a
global symbol); the absolute and plain PC-relative ones are here for data, should any
appear. Every field is big-endian, at r_offset (the operand's own bytes, not the
instruction's start).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kexec_py.plan.purgatory import S32 as _S32, U32 as _U32, RelocRecipe
from kexec_py.plan.purgatory import reloc_absolute as _absolute, reloc_nothing as _nothing
from kexec_py.plan.purgatory import reloc_pc_relative as _pc_relative

ELF_MACHINE = "EM_S390"

R_390_NONE = 0
R_390_32 = 4
R_390_PC32 = 5
R_390_PC16DBL = 17
R_390_PLT16DBL = 18
R_390_PC32DBL = 19
R_390_PLT32DBL = 20
R_390_64 = 22
R_390_PC64 = 23

_OUT_OF_RANGE = 1 << 40         # a value no recipe's range admits: the link reports it


def _pc_halfwords(s: int, a: int, p: int) -> int:
    value = s + a - p
    return value >> 1 if value % 2 == 0 else _OUT_OF_RANGE


_S16 = (-(1 << 15), 1 << 15)

RELOCATIONS: Mapping[int, RelocRecipe] = MappingProxyType({
    R_390_NONE: RelocRecipe("R_390_NONE", 0, _nothing),
    R_390_64: RelocRecipe("R_390_64", 8, _absolute),
    R_390_32: RelocRecipe("R_390_32", 4, _absolute, _U32),
    R_390_PC64: RelocRecipe("R_390_PC64", 8, _pc_relative),
    R_390_PC32: RelocRecipe("R_390_PC32", 4, _pc_relative, _S32),
    R_390_PC32DBL: RelocRecipe("R_390_PC32DBL", 4, _pc_halfwords, _S32),
    R_390_PLT32DBL: RelocRecipe("R_390_PLT32DBL", 4, _pc_halfwords, _S32),
    R_390_PC16DBL: RelocRecipe("R_390_PC16DBL", 2, _pc_halfwords, _S16),
    R_390_PLT16DBL: RelocRecipe("R_390_PLT16DBL", 2, _pc_halfwords, _S16),
})
