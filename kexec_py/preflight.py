"""Every check made before a kexec system call: each run once, all before the call.

Both syscalls free an already loaded crash kernel before they look at the new one
(kexec_load in do_kexec_load, kexec_file_load before it even reads the files), so
anything the kernel would refuse after that must be refused here first: a failed
reload must not leave the machine without a crash kernel.

* Permission (``check_permitted``): the kernel refuses every kexec_load and
  kexec_file_load, loads and unloads alike, from a process without CAP_SYS_BOOT
  or once ``kexec_load_disabled`` is set (a one-way switch); from Linux 6.7 it also
  counts loads down in ``kexec_load_limit_panic`` / ``kexec_load_limit_reboot``
  (-1: no limit). These refusals cost nothing loaded, but finding them here gives a
  message that names the cause instead of a bare EPERM.
* Lockdown (``lockdown_mode``, ``check_signed``): a locked-down kernel
  (``/sys/kernel/security/lockdown``: integrity or confidentiality) refuses
  kexec_load altogether, and kexec_file_load of a kernel it cannot verify, after
  the free.
* kexec_load plans (``check_plan``): what kernel/kexec_core.c's segment checks,
  kimage_alloc_init and kimage_crash_alloc refuse.
* kexec_file_load plans (``check_file_plan``): the files, the command line, room in
  the crash region.
* The crash dump's own needs (``check_crash_facts``): a VMCOREINFO note.
"""

from __future__ import annotations

import os
import re

from kexec_py.errors import ImageError, KexecError, NotPermitted, PlacementError, SnapshotError, UsageError
from kexec_py.plan.plan import FilePlan, SegmentPlan
from kexec_py.plan.ranges import MiB, Range, align_up, merge
from kexec_py.structs import kexec_uapi as K

CAP_SYS_BOOT = 22
DISABLED = "/proc/sys/kernel/kexec_load_disabled"
LIMIT_PANIC = "/proc/sys/kernel/kexec_load_limit_panic"
LIMIT_REBOOT = "/proc/sys/kernel/kexec_load_limit_reboot"
LOCKDOWN = "/sys/kernel/security/lockdown"


def has_cap_sys_boot(status_path: str = "/proc/self/status") -> bool | None:
    """Whether this process may use kexec at all (None: cannot tell). This is the
    process's own state, so it is read from the real /proc, not the SystemView."""
    try:
        with open(status_path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)\s*$", text, re.M)
    return bool(int(m.group(1), 16) >> CAP_SYS_BOOT & 1) if m else None


def _read(sys, path: str) -> str | None:
    try:
        text = sys.read_optional(path)
    except KexecError:
        return None             # unreadable: the kernel will say, if it matters
    return text.strip() if text is not None else None


def check_permitted(sys, *, crash: bool, caps: bool | None = None) -> None:
    """Raise NotPermitted when the kernel would refuse any kexec load or unload."""
    caps = has_cap_sys_boot() if caps is None else caps
    if caps is False:
        raise NotPermitted("kexec needs the CAP_SYS_BOOT capability, which this process does not have",
                           "run as root")
    if _read(sys, DISABLED) == "1":
        raise NotPermitted(f"kexec is disabled on this system: {DISABLED} is 1",
                           "it cannot be set back to 0: reboot without setting kernel.kexec_load_disabled")
    limit = LIMIT_PANIC if crash else LIMIT_REBOOT
    if _read(sys, limit) == "0":
        raise NotPermitted(f"{limit} is 0: this kernel allows no more {'crash ' if crash else ''}kernel loads "
                           "or unloads", "the limit can only be lowered: reboot to load a kernel")


def check_exec_permitted(caps: bool | None = None) -> None:
    caps = has_cap_sys_boot() if caps is None else caps
    if caps is False:
        raise NotPermitted("rebooting into a kernel needs the CAP_SYS_BOOT capability, which this process "
                           "does not have", "run as root")


def lockdown_mode(sys) -> str | None:
    """"integrity" or "confidentiality" when the kernel is locked down, else None
    (also when securityfs is not mounted: the kernel's EPERM then tells)."""
    m = re.search(r"\[(\w+)\]", _read(sys, LOCKDOWN) or "")
    return m.group(1) if m and m.group(1) != "none" else None


# --- kexec_load ---------------------------------------------------------------------------------

# kexec_load flags a kernel knows (KEXEC_FLAGS), besides the arch field
KNOWN_FLAGS = K.KEXEC_ON_CRASH | K.KEXEC_PRESERVE_CONTEXT | K.KEXEC_UPDATE_ELFCOREHDR | K.KEXEC_CRASH_HOTPLUG_SUPPORT
# kexec_file_load reads each file whole, up to KEXEC_FILE_SIZE_MAX
FILE_SIZE_MAX = 4 << 30
# what kexec_file_load puts in the crash region besides kernel and initrd (purgatory,
# boot parameters, ELF core header), generously
FILE_LOAD_OVERHEAD = 1 * MiB


def check_plan(plan: SegmentPlan, arch, *, ram_total: int | None = None) -> None:
    """Raise PlacementError for anything ``arch``'s kernel would refuse in a kexec_load of
    ``plan``. ``ram_total``: the RAM the kernel counts (no segment, and not all of them
    together, may take more than half of it); None when unknown."""
    segs = sorted(plan.segments, key=lambda s: s.mem)
    if not segs:
        raise PlacementError("the plan has no segments")
    if len(segs) > K.KEXEC_SEGMENT_MAX:
        raise PlacementError(f"{len(segs)} segments, the kernel takes at most {K.KEXEC_SEGMENT_MAX}")
    _check_flags(plan, arch)
    limit = arch.destination_limit
    page = plan.page_size
    for s in segs:
        if s.mem % page or s.memsz % page:
            raise PlacementError(f"{s.name} segment at {s.mem:#x}+{s.memsz:#x} is not aligned to the "
                                 f"running kernel's {page // 1024} KiB pages")
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
        _check_half_of_ram(segs, ram_total, page)


def _check_flags(plan: SegmentPlan, arch) -> None:
    unknown = plan.flags & ~K.KEXEC_ARCH_MASK & ~KNOWN_FLAGS
    if unknown:
        raise PlacementError(f"kexec_load flags {plan.flags:#x} have bits no kernel knows ({unknown:#x})")
    field = plan.flags & K.KEXEC_ARCH_MASK
    if field not in (K.KEXEC_ARCH_DEFAULT, arch.native_kexec_arch):
        raise PlacementError(f"kexec_load flags {plan.flags:#x} name machine {field >> 16}, "
                             f"but a {arch.name} kernel takes only its own")


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


def _check_half_of_ram(segs, ram_total: int, page: int) -> None:
    half = ram_total // page // 2
    total = 0
    for s in segs:
        pages = align_up(s.memsz, page) // page
        if pages > half:
            raise PlacementError(f"the {s.name} segment ({s.memsz:#x} bytes) is more than half of the "
                                 f"machine's RAM ({ram_total:#x} bytes), which the kernel refuses")
        total += pages
    if total > half:
        raise PlacementError(f"the segments take {total * page:#x} bytes, more than half of the machine's "
                             f"RAM ({ram_total:#x} bytes), which the kernel refuses",
                             "use a smaller initrd")


# --- kexec_file_load ---------------------------------------------------------------------------

def check_file_plan(plan: FilePlan, limits, *, crash_region: Range | None, page_size: int) -> None:
    """Raise for anything kexec_file_load would refuse after freeing the loaded crash
    kernel: unreadable or empty files, files over 4 GiB, a command line over the
    kernel's limit, kernel and initrd that do not fit in the crash region.
    ``limits``: the arch's FileInputs for the image."""
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
        need = (align_up(max(limits.kernel_memory, kernel_size), page_size) + limits.kernel_align
                + align_up(initrd_size, page_size) + FILE_LOAD_OVERHEAD)
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




# --- lockdown and signatures ------------------------------------------------------------------------

def signature_checked(arch, sys) -> bool:
    """Whether this kernel's kexec_file_load verifies the kernel image's signature at all: an
    arch may know that it does not here (``arch.checks_signature(sys)``: s390x only when the
    machine was IPLed in secure mode), and then a locked-down kernel takes an unsigned one."""
    check = getattr(arch, "checks_signature", None)
    return check is None or check(sys)


def check_signed(plan: FilePlan, arch, sys, kernel) -> None:
    """A locked-down kernel's kexec_file_load refuses a kernel it cannot verify, and
    only after it has freed the loaded crash kernel: refuse one that carries no
    signature of the kind ``arch`` verifies (``kernel``: the bytes it will read), unless
    IMA may appraise the file through its security.ima attribute."""
    mode = lockdown_mode(sys)
    if mode is None or arch.signed(kernel) or not signature_checked(arch, sys):
        return
    if plan.kernel_bytes is None:
        try:
            os.getxattr(plan.kernel, "security.ima")
            return                      # IMA may appraise it: let the kernel decide
        except OSError:
            pass
    raise NotPermitted(f"{plan.kernel}: the kernel is locked down ({mode}) and this kernel image carries no "
                       "signature, so kexec_file_load would refuse it" +
                       (", after discarding the loaded crash kernel" if plan.flags & K.KEXEC_FILE_ON_CRASH else ""),
                       "load a kernel signed for this machine (the distribution's signed kernel package)")


# --- the crash dump's own needs ---------------------------------------------------------------------

def check_crash_facts(sys) -> None:
    """A dump without VMCOREINFO cannot be read by makedumpfile, crash or vmcore-dmesg."""
    if sys.vmcoreinfo() is None:
        raise SnapshotError("/sys/kernel/vmcoreinfo does not exist: the dump would have no VMCOREINFO "
                            "note, which makedumpfile, crash and vmcore-dmesg need",
                            "the kernel needs CONFIG_CRASH_DUMP, and /sys must be mounted")


def ram_total(sys) -> int | None:
    """RAM the kernel counts as its own (System RAM less the crash regions), or None."""
    from kexec_py.plan.ranges import subtract
    try:
        ram = merge(sys.iomem.containing_name("System RAM"))
        return sum(r.size for r in subtract(ram, sys.crash_regions())) or None
    except KexecError:
        return None
