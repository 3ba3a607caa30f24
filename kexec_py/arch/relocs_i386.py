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

from kexec_py.plan.purgatory import S32 as _S32, U32 as _U32, RelocRecipe
from kexec_py.plan.purgatory import reloc_absolute as _absolute, reloc_nothing as _nothing
from kexec_py.plan.purgatory import reloc_pc_relative as _pc_relative

ELF_MACHINE = "EM_386"

R_386_NONE = 0
R_386_32 = 1
R_386_PC32 = 2
R_386_PLT32 = 4


RELOCATIONS: Mapping[int, RelocRecipe] = MappingProxyType({
    R_386_NONE: RelocRecipe("R_386_NONE", 0, _nothing),
    R_386_32: RelocRecipe("R_386_32", 4, _absolute, _U32),
    R_386_PC32: RelocRecipe("R_386_PC32", 4, _pc_relative, _S32),
    R_386_PLT32: RelocRecipe("R_386_PLT32", 4, _pc_relative, _S32),
})
