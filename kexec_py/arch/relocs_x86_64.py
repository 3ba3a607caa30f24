"""Relocation recipes for the x86_64 purgatory, as data.

Type numbers and formulas are those of the x86-64 System V psABI: S is the
symbol's placed address, A the addend, P the placed address of the location.
The purgatory is built with -mcmodel=large, so it needs only R_X86_64_64 for
absolute addresses and PC32/PLT32 for RIP-relative ones; the others are here
for objects built differently. A PLT32 call goes straight to the symbol: a
self-contained object has no PLT, so L = S. The PC-relative 32-bit types are
range-checked too (kexec-tools does not), so a bad placement is reported
rather than turned into a wild jump.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kexec_py.plan.purgatory import S32 as _S32, U32 as _U32, RelocRecipe
from kexec_py.plan.purgatory import reloc_absolute as _absolute, reloc_nothing as _nothing
from kexec_py.plan.purgatory import reloc_pc_relative as _pc_relative

ELF_MACHINE = "EM_X86_64"

R_X86_64_NONE = 0
R_X86_64_64 = 1
R_X86_64_PC32 = 2
R_X86_64_PLT32 = 4
R_X86_64_32 = 10
R_X86_64_32S = 11
R_X86_64_PC64 = 24


RELOCATIONS: Mapping[int, RelocRecipe] = MappingProxyType({
    R_X86_64_NONE: RelocRecipe("R_X86_64_NONE", 0, _nothing),
    R_X86_64_64: RelocRecipe("R_X86_64_64", 8, _absolute),
    R_X86_64_PC32: RelocRecipe("R_X86_64_PC32", 4, _pc_relative, _S32),
    R_X86_64_PLT32: RelocRecipe("R_X86_64_PLT32", 4, _pc_relative, _S32),
    R_X86_64_32: RelocRecipe("R_X86_64_32", 4, _absolute, _U32),
    R_X86_64_32S: RelocRecipe("R_X86_64_32S", 4, _absolute, _S32),
    R_X86_64_PC64: RelocRecipe("R_X86_64_PC64", 8, _pc_relative),
})
