"""Every check the kernel makes on a load, made before we call it.

Both syscalls free an already loaded crash kernel before they look at the new
one (kexec_load in do_kexec_load, kexec_file_load before it even reads the
files), so anything the kernel would refuse must be refused here first: a failed
reload must not leave the machine without a crash kernel.

``check_plan`` covers kexec_load (kernel/kexec_core.c sanity_check_segment_list,
kimage_alloc_init, kimage_crash_alloc); ``check_file_plan`` covers what
kexec_file_load finds wrong after the free (the files, the command line, the
x86 bzImage probe and load, room in the crash region).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from kexec_py.errors import FileSyscallUnavailable, ImageError, PlacementError, UsageError
from kexec_py.plan.plan import FilePlan, SegmentPlan
from kexec_py.plan.ranges import MiB, PAGE_SIZE, Range, align_up, merge
from kexec_py.structs import kexec_uapi as K

# kexec_load flags a kernel knows (KEXEC_FLAGS), besides the arch field
KNOWN_FLAGS = K.KEXEC_ON_CRASH | K.KEXEC_PRESERVE_CONTEXT | K.KEXEC_UPDATE_ELFCOREHDR | K.KEXEC_CRASH_HOTPLUG_SUPPORT
# the arch field each architecture's kernel takes besides KEXEC_ARCH_DEFAULT
NATIVE_ARCH = {"x86_64": K.KEXEC_ARCH_X86_64, "i386": K.KEXEC_ARCH_386, "arm64": K.KEXEC_ARCH_AARCH64,
               "arm": K.KEXEC_ARCH_ARM, "ppc64le": K.KEXEC_ARCH_PPC64, "s390x": K.KEXEC_ARCH_S390}
# KEXEC_DESTINATION_MEMORY_LIMIT: a segment must end below it (x86_64: MAXMEM with
# 5-level paging, the larger of its two values; 32-bit: the top of the address space)
DESTINATION_LIMIT = {"x86_64": 1 << 52, "i386": (1 << 32) - 1, "arm": (1 << 32) - 1}
# kexec_file_load reads each file whole, up to KEXEC_FILE_SIZE_MAX
FILE_SIZE_MAX = 4 << 30
# x86: the kernel appends "elfcorehdr=0x<addr> " (MAX_ELFCOREHDR_STR_LEN) and checks
# the room for it on every kexec_file_load, crash or not
X86_ELFCOREHDR_STR_LEN = 30
ARM64_COMMAND_LINE_SIZE = 2048
# what kexec_file_load puts in the crash region besides kernel and initrd (purgatory,
# boot parameters, ELF core header), generously
FILE_LOAD_OVERHEAD = 1 * MiB


def check_plan(plan: SegmentPlan, *, ram_total: int | None = None) -> None:
    """Raise PlacementError for anything kexec_load would refuse. ``ram_total``: the
    RAM the kernel counts (no segment, and not all of them together, may take more
    than half of it); None when unknown."""
    segs = sorted(plan.segments, key=lambda s: s.mem)
    if not segs:
        raise PlacementError("the plan has no segments")
    if len(segs) > K.KEXEC_SEGMENT_MAX:
        raise PlacementError(f"{len(segs)} segments, the kernel takes at most {K.KEXEC_SEGMENT_MAX}")
    _check_flags(plan)
    limit = DESTINATION_LIMIT.get(plan.arch, 1 << 64)
    for s in segs:
        if s.mem % PAGE_SIZE or s.memsz % PAGE_SIZE:
            raise PlacementError(f"{s.name} segment at {s.mem:#x}+{s.memsz:#x} is not page aligned")
        if s.memsz == 0:
            raise PlacementError(f"{s.name} segment at {s.mem:#x} has no memory")
        if s.bufsz > s.memsz:
            raise PlacementError(f"{s.name} segment has {s.bufsz:#x} bytes but only {s.memsz:#x} of memory")
        if s.mem + s.memsz >= limit:
            raise PlacementError(f"{s.name} segment {s.mem:#x}-{s.mem + s.memsz - 1:#x} ends beyond the "
                                 f"highest address the kernel loads to ({limit:#x})")
    for a, b in zip(segs, segs[1:]):
        if a.range.overlaps(b.range):
            raise PlacementError(f"{a.name} and {b.name} segments overlap")
    if plan.flags & K.KEXEC_ON_CRASH:
        _check_crash(plan, segs)
    else:
        allowed = merge(plan.allowed)
        for s in segs:
            if allowed and not any(a.contains(s.range) for a in allowed):
                raise PlacementError(f"{s.name} segment {s.mem:#x}-{s.mem + s.memsz - 1:#x} is not in RAM")
    if not any(s.range.contains(plan.entry) for s in segs):
        raise PlacementError(f"entry point {plan.entry:#x} is in no segment")
    if ram_total:
        _check_half_of_ram(segs, ram_total)


def _check_flags(plan: SegmentPlan) -> None:
    unknown = plan.flags & ~K.KEXEC_ARCH_MASK & ~KNOWN_FLAGS
    if unknown:
        raise PlacementError(f"kexec_load flags {plan.flags:#x} have bits no kernel knows ({unknown:#x})")
    arch = plan.flags & K.KEXEC_ARCH_MASK
    if arch not in (K.KEXEC_ARCH_DEFAULT, NATIVE_ARCH.get(plan.arch, K.KEXEC_ARCH_DEFAULT)):
        raise PlacementError(f"kexec_load flags {plan.flags:#x} name machine {arch >> 16}, "
                             f"but a {plan.arch} kernel takes only its own")


def _check_crash(plan: SegmentPlan, segs) -> None:
    """A crash load must lie wholly in crashk_res, the main "Crash kernel" range: the
    highest one when crashkernel=,high adds a low one (crashk_low_res, which the
    kernel keeps for DMA and never loads into). The entry point too."""
    if not plan.allowed:
        raise PlacementError("a crash load needs the crash region, and the plan has none",
                             "boot with crashkernel=256M (or more)")
    region = max(plan.allowed, key=lambda r: r.start)
    where = f"the crash region {region.start:#x}-{region.last:#x}"
    for s in segs:
        if not region.contains(s.range):
            raise PlacementError(f"{s.name} segment {s.mem:#x}-{s.mem + s.memsz - 1:#x} lies outside {where}",
                                 "every segment of a -p load must be inside the 'Crash kernel' region")
    if not region.contains(plan.entry):
        raise PlacementError(f"entry point {plan.entry:#x} lies outside {where}")


def _check_half_of_ram(segs, ram_total: int) -> None:
    half = ram_total // PAGE_SIZE // 2
    total = 0
    for s in segs:
        pages = align_up(s.memsz, PAGE_SIZE) // PAGE_SIZE
        if pages > half:
            raise PlacementError(f"the {s.name} segment ({s.memsz:#x} bytes) is more than half of the "
                                 f"machine's RAM ({ram_total:#x} bytes), which the kernel refuses")
        total += pages
    if total > half:
        raise PlacementError(f"the segments take {total * PAGE_SIZE:#x} bytes, more than half of the machine's "
                             f"RAM ({ram_total:#x} bytes), which the kernel refuses",
                             "use a smaller initrd")


# --- kexec_file_load ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FileLimits:
    """What the loaded image tells about a kexec_file_load of it."""
    kernel_memory: int = 0          # bytes the kernel occupies once running (bss included)
    kernel_align: int = PAGE_SIZE
    cmdline_max: int | None = None  # longest command line, NUL included, the kernel takes
    refusal: str | None = None      # why kexec_file_load would refuse this image (ENOEXEC), if it would


def file_limits(image, *, arch: str) -> FileLimits:
    """Limits for ``image`` (a parsed kernel: BzImage, Uki, Arm64Image ...)."""
    from kexec_py.structs.bootparam import XLF_CAN_BE_LOADED_ABOVE_4G
    inner = getattr(image, "kernel", None) or image          # a UKI boots its .linux
    if hasattr(inner, "init_size") and hasattr(inner, "cmdline_size"):          # a bzImage
        refusal = None
        if not inner.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G:
            refusal = (f"{image.path} cannot be loaded above 4 GiB (no XLF_CAN_BE_LOADED_ABOVE_4G), "
                       "which kexec_file_load requires")
        return FileLimits(kernel_memory=align_up(inner.init_size, PAGE_SIZE), kernel_align=inner.kernel_alignment,
                          cmdline_max=inner.cmdline_size - X86_ELFCOREHDR_STR_LEN, refusal=refusal)
    if hasattr(inner, "image_size"):                                               # an arm64 Image
        return FileLimits(kernel_memory=align_up(inner.image_size, PAGE_SIZE), kernel_align=2 * MiB,
                          cmdline_max=ARM64_COMMAND_LINE_SIZE if arch == "arm64" else None)
    return FileLimits()


def check_file_plan(plan: FilePlan, limits: FileLimits, *, crash_region: Range | None) -> None:
    """Raise for anything kexec_file_load would refuse after freeing the loaded crash
    kernel: unreadable or empty files, files over 4 GiB, a command line over the
    kernel's limit, kernel and initrd that do not fit in the crash region, an image
    the kernel's loader does not take (FileSyscallUnavailable, errno ENOEXEC)."""
    if limits.refusal:
        err = FileSyscallUnavailable(limits.refusal, "use -c (kexec_load), or the default -a, which does so "
                                     "by itself", errno=errno.ENOEXEC)
        err.userspace = True
        raise err
    kernel_size = len(plan.kernel_bytes) if plan.kernel_bytes is not None else _file_size(plan.kernel, "kernel")
    if plan.initrd is not None:
        initrd_size = _file_size(plan.initrd, "initrd")
    else:
        initrd_size = len(plan.initrd_bytes) if plan.initrd_bytes is not None else 0
    cmd_len = len(plan.cmdline.encode()) + 1
    if "\0" in plan.cmdline:
        raise UsageError("the command line contains a NUL character", "remove it from --append")
    if limits.cmdline_max is not None and cmd_len > limits.cmdline_max:
        raise UsageError(f"the command line is {cmd_len - 1} bytes; kexec_file_load with {plan.kernel} takes "
                         f"at most {limits.cmdline_max - 1}", "shorten --append / --command-line")
    if crash_region is not None:
        need = (align_up(max(limits.kernel_memory, kernel_size), PAGE_SIZE) + limits.kernel_align
                + align_up(initrd_size, PAGE_SIZE) + FILE_LOAD_OVERHEAD)
        if need > crash_region.size:
            what = f"{plan.initrd} ({initrd_size:#x} bytes) and " if initrd_size and plan.initrd else ""
            raise PlacementError(f"{what}{plan.kernel} (which needs {limits.kernel_memory:#x} bytes running) do "
                                 f"not fit in the crash region {crash_region.start:#x}-{crash_region.last:#x} "
                                 f"({crash_region.size:#x} bytes)",
                                 "reserve more memory with crashkernel= or use a smaller initrd")


def _file_size(path, what: str) -> int:
    """The size of a file kexec_file_load will read whole; raises what the kernel would refuse."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            f.read(1)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such {what} file", f"check the {what} path") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied", "run as root or fix the file mode") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a directory", f"give the {what} file itself") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read the {what}: {e.strerror}") from None
    import stat
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path} is not a regular file", f"give the {what} file itself")
    if st.st_size == 0:
        raise ImageError(f"{path}: the {what} file is empty, which kexec_file_load refuses",
                         f"drop --{what} or give a real {what}" if what == "initrd" else "re-copy the file")
    if st.st_size > FILE_SIZE_MAX:
        raise ImageError(f"{path} is {st.st_size:#x} bytes; kexec_file_load reads at most 4 GiB",
                         f"use a smaller {what}; for -p it must fit the crash region (crashkernel=)")
    return st.st_size


def has_pe_signature(data) -> bool:
    """Whether ``data`` is a PE/COFF image (an EFI-stub bzImage, a UKI) that carries an
    Authenticode signature: a certificate table (data directory 4) inside the file.
    kexec_file_load on a locked-down kernel accepts nothing else (unless IMA
    appraises the file through its security.ima attribute)."""
    from construct import ConstructError

    from kexec_py.structs import pe
    from kexec_py.structs.layout import offset_of, read_field
    view = memoryview(data)
    security = pe.IMAGE_DIRECTORY_ENTRY_SECURITY
    try:
        read_field(pe.dos_header, "e_magic", view)                   # Consts: raise unless "MZ" ...
        lfanew = read_field(pe.dos_header, "e_lfanew", view)
        read_field(pe.coff_header, "signature", view, lfanew)        # ... and "PE\0\0"
        opt = lfanew + pe.COFF_HEADER_SIZE
        plus = read_field(pe.optional_header_pe32plus, "magic", view, opt) == pe.PE32PLUS_MAGIC
        header = pe.optional_header_pe32plus if plus else pe.optional_header_pe32
        if read_field(header, "number_of_rva_and_sizes", view, opt) <= security:
            return False
        at = opt + offset_of(header, "data_directories") + security * pe.data_directory.sizeof()
        cert = pe.data_directory.parse(bytes(view[at:at + pe.data_directory.sizeof()]))
    except ConstructError:                  # not PE/COFF, or a field beyond the end of the file
        return False
    # the certificate table's "virtual address" is a file offset
    return cert.size > 0 and cert.virtual_address + cert.size <= len(view)
