"""The architectures kexec_py knows, by name. ``host()`` is the only place that asks
which machine we run on; everything else receives an arch value."""

from __future__ import annotations

from kexec_py.errors import UsageError

# uname -m spellings -> our names
_MACHINES = {
    "x86_64": "x86_64", "amd64": "x86_64",
    "i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386",
    "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armv6l": "arm", "arm": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
KNOWN = ("x86_64", "i386", "arm64", "arm", "ppc64le", "s390x")
SUPPORTED = ("x86_64", "i386", "arm64")


def host_name() -> str:
    import os
    machine = os.uname().machine
    return _MACHINES.get(machine, machine)


def check(name: str) -> None:
    """Raise the UsageError ``get`` gives for a name it cannot load, importing nothing."""
    if name not in KNOWN:
        raise UsageError(f"unknown architecture {name!r}", f"known: {', '.join(KNOWN)}")
    if name not in SUPPORTED:
        raise UsageError(f"kexec-py does not load kernels on {name} yet",
                         f"supported so far: {', '.join(SUPPORTED)}")


def get(name: str):
    check(name)
    if name == "x86_64":
        from kexec_py.arch.x86_64 import X86_64
        return X86_64()
    if name == "i386":
        from kexec_py.arch.i386 import I386
        return I386()
    if name == "arm64":
        from kexec_py.arch.arm64 import Arm64
        return Arm64()
    raise AssertionError(name)


def host():
    return get(host_name())
