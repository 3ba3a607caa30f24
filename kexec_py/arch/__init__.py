"""The architectures kexec_py knows: one registry entry each.

An entry names the module that implements the ``Arch`` protocol (``kexec_py.arch.base``)
for that architecture, the ``uname -m`` spellings of its machines, the group of
architecture-specific options it takes, and, for an architecture kexec-py does not
load kernels on, why not. Nothing is imported until ``get`` is called, so that
``-S`` and ``--help`` stay cheap.

Adding an architecture: a module under ``kexec_py/arch/``, one entry here, its
purgatory (if it has one) under ``arch/<name>/purgatory/`` with a case in
``scripts/build-purgatory``, and its syscall numbers in ``kexec_py/submit/syscalls.py``
if it is a new host ABI. The README's "How it is built" says the same.
"""

from __future__ import annotations

import os

from kexec_py.errors import UsageError
from kexec_py.record import REQUIRED, Record


class Entry(Record):
    _defaults = dict(
        name=REQUIRED,
        machines=REQUIRED,             # `uname -m` spellings of this architecture
        implementation=None,           # "module:Class" of its Arch, None: not supported
        file_syscall=False,            # whether its kernels offer kexec_file_load
        option_group=None,             # the architecture-specific options it takes (OPTION_GROUPS)
        unsupported=None,              # why kexec-py loads no kernels here
        # "module:Class" of an Arch that plans loads (--dry-run only) but is not yet proven by a
        # real load in a guest: no syscall is made with it until it moves to ``implementation``
        dry_run_only=None,
    )
    __slots__ = tuple(_defaults)


# option group -> module defining its option names (NAMES), title (TITLE) and parser (parse)
OPTION_GROUPS = {"x86": "kexec_py.arch.x86_options", "arm": "kexec_py.arch.arm_options"}

REGISTRY: dict[str, Entry] = {e.name: e for e in (
    Entry("x86_64", ("x86_64", "amd64"), "kexec_py.arch.x86_64:X86_64", file_syscall=True, option_group="x86"),
    Entry("i386", ("i386", "i486", "i586", "i686"), "kexec_py.arch.i386:I386", option_group="x86"),
    Entry("arm64", ("aarch64", "arm64"), "kexec_py.arch.arm64:Arm64", file_syscall=True),
    Entry("arm", ("armv7l", "armv6l", "armv8l", "arm"), "kexec_py.arch.arm:Arm", option_group="arm"),
    Entry("ppc64le", ("ppc64le",), "kexec_py.arch.ppc64le:Ppc64le", file_syscall=True),
    Entry("s390x", ("s390x",), "kexec_py.arch.s390x:S390x", file_syscall=True),
    Entry("ia64", ("ia64",), unsupported="Itanium support was removed from Linux in 6.7, and there is no "
          "emulator or Debian kernel to test a loader with"),
)}
KNOWN = tuple(REGISTRY)
SUPPORTED = tuple(name for name, e in REGISTRY.items() if e.implementation)


def name_of_machine(machine: str) -> str:
    """Our name for a `uname -m` spelling (the spelling itself when unknown)."""
    for entry in REGISTRY.values():
        if machine in entry.machines:
            return entry.name
    return machine


def host_name() -> str:
    """The architecture of the running kernel: the default target of a load."""
    return name_of_machine(os.uname().machine)


def entry(name: str, *, dry_run: bool = False) -> Entry:
    """The registry entry of an architecture kexec-py loads kernels on (or, with ``dry_run``,
    plans loads for); UsageError otherwise."""
    found = REGISTRY.get(name)
    if found is None:
        raise UsageError(f"unknown architecture {name!r}", f"known: {', '.join(KNOWN)}")
    if found.unsupported and not (dry_run and found.dry_run_only):
        raise UsageError(f"kexec-py does not load kernels on {name}: {found.unsupported}",
                         f"supported: {', '.join(SUPPORTED)}")
    return found


def check(name: str, *, dry_run: bool = False) -> None:
    """Raise the UsageError ``get`` would, importing nothing."""
    entry(name, dry_run=dry_run)


def get(name: str, *, dry_run: bool = False):
    """The ``Arch`` implementation of ``name`` (with ``dry_run``, also one that only plans)."""
    found = entry(name, dry_run=dry_run)
    module, _, cls = (found.implementation or found.dry_run_only).partition(":")
    return getattr(_import(module), cls)()


def _import(module: str):
    """importlib.import_module(module), without importing importlib (and warnings)."""
    return __import__(module, fromlist=["_"])
