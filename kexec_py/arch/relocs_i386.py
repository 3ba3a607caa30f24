"""Relocation recipes for the i386 purgatory, as data.

Type numbers and formulas are those of the i386 System V psABI: S is the
symbol's placed address, A the addend, P the placed address of the location.
i386 objects use REL sections, so A is the value already stored at the
location (the generic linker reads it). The purgatory is built without PIC,
so it needs R_386_32 for absolute addresses and R_386_PC32 for calls;
R_386_PLT32 (what newer assemblers emit for calls) goes straight to the
symbol, as a self-contained object has no PLT. Every value must fit in 32
bits: the purgatory runs with paging off, below 4 GiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kexec_py.plan.purgatory import RelocRecipe

ELF_MACHINE = "EM_386"

R_386_NONE = 0
R_386_32 = 1
R_386_PC32 = 2
R_386_PLT32 = 4

_U32 = (0, 1 << 32)
_S32 = (-(1 << 31), 1 << 31)


def _nothing(s: int, a: int, p: int) -> int:
    return 0


def _absolute(s: int, a: int, p: int) -> int:
    return s + a


def _pc_relative(s: int, a: int, p: int) -> int:
    return s + a - p


RELOCATIONS: Mapping[int, RelocRecipe] = MappingProxyType({
    R_386_NONE: RelocRecipe("R_386_NONE", 0, _nothing),
    R_386_32: RelocRecipe("R_386_32", 4, _absolute, _U32),
    R_386_PC32: RelocRecipe("R_386_PC32", 4, _pc_relative, _S32),
    R_386_PLT32: RelocRecipe("R_386_PLT32", 4, _pc_relative, _S32),
})
