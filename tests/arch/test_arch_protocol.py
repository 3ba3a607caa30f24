"""The arch seam: every registered architecture implements the Arch protocol, its
registry entry agrees with it, and the driver knows no architecture."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from kexec_py import arch as arches
from kexec_py.arch.base import Arch
from kexec_py.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "kexec_py"


@pytest.mark.parametrize("name", arches.SUPPORTED)
def test_every_supported_arch_implements_the_protocol(name):
    impl = arches.get(name)
    assert isinstance(impl, Arch)
    members = {n for n, v in inspect.getmembers(Arch) if not n.startswith("_")} | set(Arch.__annotations__)
    missing = [m for m in members if not hasattr(impl, m)]
    assert not missing, f"{name} lacks {missing}"
    for method in ("read_crash_facts", "plan_crash", "read_load_facts", "plan_load", "file_inputs", "signed"):
        expected = list(inspect.signature(getattr(Arch, method)).parameters)[1:]
        got = list(inspect.signature(getattr(impl, method)).parameters)
        assert len(got) == len(expected), f"{name}.{method}{got} does not take {expected}"
    entry = arches.REGISTRY[name]
    assert impl.name == name and impl.has_file_syscall == entry.file_syscall
    if getattr(impl, "uses_purgatory", True):
        assert (PACKAGE / "data" / "purgatory" / f"{name}.o").is_file(), f"no purgatory shipped for {name}"
        assert f"\n{name})" in (REPO / "scripts" / "build-purgatory").read_text(), "build-purgatory has no case for it"
    else:           # the kernel enters the image itself (arm): the planners get purgatory=None
        assert not (PACKAGE / "data" / "purgatory" / f"{name}.o").exists()
        for method in ("plan_crash", "plan_load"):
            assert inspect.signature(getattr(impl, method)).parameters["purgatory"].default is None


def test_every_uname_spelling_names_one_arch():
    seen = {}
    for entry in arches.REGISTRY.values():
        for machine in entry.machines:
            assert machine not in seen, f"{machine} is both {seen[machine]} and {entry.name}"
            seen[machine] = entry.name
    assert arches.name_of_machine("aarch64") == "arm64" and arches.name_of_machine("i686") == "i386"


@pytest.mark.parametrize("name,words", [
    ("ia64", "removed from Linux in 6.7"),
    ("sparc64", "unknown architecture"),
])
def test_unsupported_arches_are_refused_with_the_reason(name, words):
    with pytest.raises(UsageError, match=words):
        arches.get(name)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("kexec_py")}


def test_the_driver_names_no_architecture():
    source = (PACKAGE / "driver.py").read_text()
    code = "\n".join(line.split("#")[0] for line in source.splitlines())
    for word in ("x86", "i386", "arm64", "aarch64", "ppc64", "s390", "e820", "bzImage", "hasattr(", "0x3f8",
                 "getxattr", "has_pe_signature"):
        assert word.lower() not in code.lower(), f"driver.py names {word!r}"
    arch_modules = {m for m in _imports(PACKAGE / "driver.py") if m.startswith("kexec_py.arch.")}
    assert arch_modules <= {"kexec_py.arch.base", "kexec_py.arch.base.LoadInputs"}, arch_modules


# the modules of kexec_py.arch (its __init__, the registry, is not one: anyone may ask it)
ARCH_MODULES = tuple(f"kexec_py.arch.{p.stem}" for p in (PACKAGE / "arch").glob("*.py") if p.stem != "__init__")
# package -> packages it must not import (the data flow: inputs -> plan -> preflight -> submit)
FORBIDDEN = {
    "image": ("kexec_py.arch", "kexec_py.plan", "kexec_py.system", "kexec_py.submit", "kexec_py.driver",
              "kexec_py.preflight", "kexec_py.cli"),
    "system": ("kexec_py.arch", "kexec_py.image", "kexec_py.submit", "kexec_py.driver", "kexec_py.preflight",
               "kexec_py.cli"),
    "plan": ("kexec_py.arch", "kexec_py.system", "kexec_py.submit", "kexec_py.driver", "kexec_py.preflight",
             "kexec_py.cli"),
    "structs": ("kexec_py.arch", "kexec_py.image", "kexec_py.plan", "kexec_py.system", "kexec_py.submit",
                "kexec_py.driver", "kexec_py.cli"),
    "submit": (*ARCH_MODULES, "kexec_py.image", "kexec_py.system", "kexec_py.driver", "kexec_py.preflight",
               "kexec_py.cli"),
    "arch": ("kexec_py.submit", "kexec_py.driver", "kexec_py.preflight", "kexec_py.cli"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_levels(package):
    bad = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(REPO)} imports {module}")
    assert not bad, "\n".join(bad)
