"""The device-tree properties that list a pseries machine's hot-pluggable memory
(PAPR; the kernel's arch/powerpc drconf readers), all big-endian:

    ibm,dynamic-memory     u32 count, then count entries of one LMB each
    ibm,dynamic-memory-v2  u32 count, then count entries of n consecutive LMBs

Each LMB is ``ibm,lmb-size`` bytes (a property of the same node).
"""

from construct import Int32ub, Int64ub, PrefixedArray, Struct

DRCONF_MEM_ASSIGNED = 0x00000008
DRCONF_MEM_RESERVED = 0x00000080

dynamic_memory_v1 = PrefixedArray(Int32ub, Struct(
    "base" / Int64ub,               # 0x00
    "drc_index" / Int32ub,          # 0x08
    "reserved" / Int32ub,           # 0x0c
    "aa_index" / Int32ub,           # 0x10
    "flags" / Int32ub,              # 0x14
))

dynamic_memory_v2 = PrefixedArray(Int32ub, Struct(
    "count" / Int32ub,              # 0x00: LMBs in this run
    "base" / Int64ub,               # 0x04
    "drc_index" / Int32ub,          # 0x0c
    "aa_index" / Int32ub,           # 0x10
    "flags" / Int32ub,              # 0x14
))
