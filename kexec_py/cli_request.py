"""Turning parsed option values into a Request: kexec-tools' validation rules,
number syntax and refusals, kept out of cli.py so that --help imports none of it."""

from __future__ import annotations

from kexec_py.errors import UsageError
from kexec_py.request import Request, parse_number, steps_from_options

# option -> why kexec-py refuses it (each also refused, in its own way, by kexec-tools
# on the setups kexec-py supports, or a feature kexec-py leaves out on purpose)
_REFUSED = {
    "reuseinitrd": "--reuseinitrd is not implemented on this architecture",
    "load_preserve_context": "--load-preserve-context (kexec jump) is not supported by kexec-py",
    "load_jump_back_helper": "--load-jump-back-helper (kexec jump) is not supported by kexec-py",
    "exec_live_update": "--exec-live-update needs a Xen dom0",
    "load_live_update": "--load-live-update needs a Xen dom0",
    "module": "--module: multiboot kernels are not supported by kexec-py",
    "real_mode": "--real-mode: kexec-py enters x86 kernels at their 64-bit or 32-bit entry only",
    "entry_32bit": "--entry-32bit is not supported by kexec-py on x86_64",
    "args_elf": "--args-elf (ELF boot notes) is not supported by kexec-py",
}


def refuse_unsupported(v: dict) -> None:
    for name, why in _REFUSED.items():
        if v.get(name):
            raise UsageError(why)


def arch_options(v: dict, arch: str):
    """The options of ``arch``'s own group, parsed; UsageError for options of another group."""
    from kexec_py import arch as arches
    own = arches.entry(arch, dry_run=bool(v.get("dry_run"))).option_group
    parsed = None
    for group, module_name in arches.OPTION_GROUPS.items():
        module = arches._import(module_name)
        if group == own:
            parsed = module.parse(v)
        elif given := [n for n in module.NAMES if v.get(n) not in (None, False)]:
            raise UsageError(f"--{given[0].replace('_', '-')}: {module.TITLE} are not available on {arch}")
    return parsed


def build_request(actions: list[str], v: dict, *, arch: str) -> Request:
    options = arch_options(v, arch)
    mem_min = parse_number(v["mem_min"], "--mem-min")
    mem_max = parse_number(v["mem_max"], "--mem-max")
    if mem_min is not None and mem_max is not None and mem_min > mem_max:
        raise UsageError(f"--mem-min {mem_min:#x} is above --mem-max {mem_max:#x}")
    steps = steps_from_options(actions, no_sync=v["no_sync"], no_ifdown=v["no_ifdown"])
    return Request(
        steps=steps, kernel=v["kernel"], initrd=v["initrd"], append=v["append"],
        reuse_cmdline=v["reuse_cmdline"], debug=v["debug"], dry_run=v["dry_run"],
        image_type=v["image_type"], no_checks=v["no_checks"],
        mem_min=mem_min or 0, mem_max=(1 << 64) - 1 if mem_max is None else mem_max,
        entry=parse_number(v["entry"], "--entry"), hotplug=v["hotplug"], dtb=v["dtb"],
        no_cma=v["no_cma"], force_dtb=v["force_dtb"], arch_options=options)

