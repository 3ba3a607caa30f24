"""Text for people: the plan that --dry-run prints and the segment dump of -d."""

from __future__ import annotations

from kexec_py.plan.plan import FilePlan, SegmentPlan, UnloadPlan
from kexec_py.structs import kexec_uapi as K

_LOAD_FLAGS = {K.KEXEC_ON_CRASH: "KEXEC_ON_CRASH", K.KEXEC_PRESERVE_CONTEXT: "KEXEC_PRESERVE_CONTEXT",
               K.KEXEC_UPDATE_ELFCOREHDR: "KEXEC_UPDATE_ELFCOREHDR"}
_FILE_FLAGS = {K.KEXEC_FILE_UNLOAD: "KEXEC_FILE_UNLOAD", K.KEXEC_FILE_ON_CRASH: "KEXEC_FILE_ON_CRASH",
               K.KEXEC_FILE_NO_INITRAMFS: "KEXEC_FILE_NO_INITRAMFS", K.KEXEC_FILE_DEBUG: "KEXEC_FILE_DEBUG"}


def _flag_names(flags: int, names: dict[int, str], *, arch_field: bool) -> str:
    out = [name for bit, name in names.items() if flags & bit]
    if arch_field and flags & K.KEXEC_ARCH_MASK:
        out.append(f"KEXEC_ARCH={flags >> 16}")
    return f"{flags:#x}" + (f" ({' | '.join(out)})" if out else "")


def render_plan(plan) -> str:
    if isinstance(plan, SegmentPlan):
        lines = [f"syscall: kexec_load  arch: {plan.arch}",
                 f"flags:   {_flag_names(plan.flags, _LOAD_FLAGS, arch_field=True)}",
                 f"entry:   {plan.entry:#x}",
                 f"cmdline: {plan.cmdline}",
                 f"segments: {len(plan.segments)}",
                 f"  {'name':<11} {'mem':>18} {'memsz':>12} {'bufsz':>12}"]
        for s in plan.segments:
            lines.append(f"  {s.name:<11} {s.mem:#18x} {s.memsz:#12x} {s.bufsz:#12x}")
        lines += [f"note: {n}" for n in plan.notes]
        return "\n".join(lines)
    if isinstance(plan, FilePlan):
        kernel = f"{plan.kernel}" + (" (decompressed or unwrapped, passed as a memfd)"
                                     if plan.kernel_bytes is not None else "")
        return "\n".join([f"syscall: kexec_file_load  arch: {plan.arch}",
                          f"flags:   {_flag_names(plan.flags, _FILE_FLAGS, arch_field=False)}",
                          f"kernel:  {kernel}",
                          f"initrd:  {plan.initrd or ('(embedded, passed as a memfd)' if plan.initrd_bytes is not None else '(none)')}",
                          f"cmdline: {plan.cmdline}"] + [f"note: {n}" for n in plan.notes])
    if isinstance(plan, UnloadPlan):
        call = "kexec_file_load" if plan.use_file_syscall else "kexec_load"
        return f"syscall: {call}  unload the {'crash' if plan.crash else 'kexec'} kernel"
    raise TypeError(plan)


def render_segments_kexec_tools(plan: SegmentPlan) -> str:
    """The segment dump kexec-tools prints with -d, field for field: buf is the address
    of the bytes in this process that the kernel will copy (NULL for none)."""
    lines = [f"nr_segments = {len(plan.segments)}"]
    for i, s in enumerate(plan.segments):
        lines += [f"segment[{i}].buf   = {_address(s.buf):#x}",
                  f"segment[{i}].bufsz = {s.bufsz:#x}",
                  f"segment[{i}].mem   = {s.mem:#x}",
                  f"segment[{i}].memsz = {s.memsz:#x}"]
    return "\n".join(lines)


def _address(buf) -> int:
    """Where ``buf``'s bytes are in memory: what kexec_load is handed (no copy is made)."""
    if not len(buf):
        return 0
    from kexec_py.submit._ffi import ffi
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buf)))
