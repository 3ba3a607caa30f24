"""Struct forms of construct definitions, precompiled, for the paths that must start fast.

Replaced by struct for speed: importing construct takes about 10 ms of the 35 ms a
``kexec-py -s`` run may take (issue 13), and the kexec_file_load path reads nothing
but the bzImage's setup header. Each table here is what
``kexec_py.structs.layout.fast_struct`` derives from the construct definition it
names (format and field names), written out so that the definition's module, and
construct, need not be imported. The definitions stay the source of truth:
``tests/structs/test_fast_forms.py`` derives each form again and compares, and
parses real and random headers both ways.
"""

from __future__ import annotations

import struct

# kexec_py.structs.bootparam.setup_header (Documentation/arch/x86/boot.rst), from 0x1f1
SETUP_HEADER_OFFSET = 0x1F1
SETUP_HEADER = struct.Struct("<BHLHHHHH4sHLHHBBHLLLLHBBLLLBBHLLQLLQQLLL")
SETUP_HEADER_NAMES = (
    "setup_sects", "root_flags", "syssize", "ram_size", "vid_mode", "root_dev", "boot_flag", "jump", "header",
    "version", "realmode_swtch", "start_sys_seg", "kernel_version", "type_of_loader", "loadflags",
    "setup_move_size", "code32_start", "ramdisk_image", "ramdisk_size", "bootsect_kludge", "heap_end_ptr",
    "ext_loader_ver", "ext_loader_type", "cmd_line_ptr", "initrd_addr_max", "kernel_alignment",
    "relocatable_kernel", "min_alignment", "xloadflags", "cmdline_size", "hardware_subarch",
    "hardware_subarch_data", "payload_offset", "payload_length", "setup_data", "pref_address", "init_size",
    "handover_offset", "kernel_info_offset",
)
SETUP_HEADER_HEADER_AT = 0x11       # offset of "header" ("HdrS") in the setup header: where the jump counts from

# kexec_py.structs.bootparam flags the kexec_file_load path checks
LOADED_HIGH = 0x01                  # loadflags
XLF_KERNEL_64 = 0x01                # xloadflags
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02
