"""kexec_py.record: the value classes of the start-up path behave as the frozen
dataclasses they replace, with ``dataclasses`` itself as the reference: for each
Record class, a dataclass with the same fields and defaults is built here and both
are compared (construction, defaults, repr, equality, hashing, replace, refused
assignment). And the paths issue 13 made fast import none of the modules it took
off them (dataclasses, typing, pathlib, construct, ...): a change that puts one back
fails here, not only in the benchmark."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kexec_py.arch import Entry, x86
from kexec_py.arch.base import FileInputs, LoadInputs
from kexec_py.arch.x86_64 import X86_64
from kexec_py.arch.x86_64_load import KernelPart
from kexec_py.arch.x86_options import X86Options
from kexec_py.arch.zeropage import ZeroPageSpec
from kexec_py.driver import Inputs
from kexec_py.image.bzimage import BzImage
from kexec_py.image.open import ImageFormat, KernelFile
from kexec_py.paths import path_text
from kexec_py.plan import purgatory
from kexec_py.plan.elf_core import Backup, CoreHeaderSpec, KernelTextMap
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import FilePlan, Segment, SegmentPlan, UnloadPlan
from kexec_py.plan.ranges import Range
from kexec_py.record import REQUIRED, Record, factory, replace
from kexec_py.request import Request, Steps
from kexec_py.system.iomem import IoMem
from kexec_py.system.kcore import Kcore, KcoreLoad
from kexec_py.system.view import CrashNote, TypedRange

REPO = Path(__file__).resolve().parent.parent
FROZEN = [Entry, FileInputs, LoadInputs, X86_64, X86Options, Inputs, BzImage, ImageFormat, KernelFile, FilePlan,
          # the x86_64 kexec_load (-c) path (issue 13, second part)
          x86.CrashFacts, x86.EfiFacts, x86.EfiHandover, x86.LoadFacts, x86.CrashCore, x86.BootLayout, ZeroPageSpec,
          KernelPart, KcoreLoad, Kcore, KernelTextMap, Backup, CoreHeaderSpec, Placement, purgatory.RelocRecipe,
          purgatory._Section, purgatory._Symbol, purgatory._Reloc, purgatory._Layout,
          Segment, SegmentPlan, UnloadPlan, Request, Steps, IoMem, CrashNote, TypedRange]


def reference(cls: type[Record]):
    """The frozen dataclass ``cls`` stands for: same name, fields, defaults, hidden fields."""
    fields = []
    for name, default in cls._defaults.items():
        kw = {"repr": name not in cls._hidden, "compare": name not in cls._uncompared}
        if default is REQUIRED:
            fields.append((name, object, dataclasses.field(**kw)))
        elif type(default) is factory:
            fields.append((name, object, dataclasses.field(default_factory=default.make, **kw)))
        else:
            fields.append((name, object, dataclasses.field(default=default, **kw)))
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=cls._frozen)


def sample(cls: type[Record], salt: int) -> dict:
    """A value for every field (distinct per salt)."""
    return {name: (salt, name) for name in cls._fields}


@pytest.mark.parametrize("cls", FROZEN, ids=lambda c: c.__name__)
def test_behaves_as_the_frozen_dataclass(cls):
    ref = reference(cls)
    a, b, c = (sample(cls, 1), sample(cls, 1), sample(cls, 2))
    mine, theirs = cls(**a), ref(**a)
    if "__repr__" not in cls.__dict__:            # BzImage and Segment write their own
        assert repr(mine).replace(cls.__qualname__, cls.__name__) == repr(theirs)
    assert (mine == cls(**b)) == (theirs == ref(**b)) is True
    assert (mine == cls(**c)) == (theirs == ref(**c)) is False
    assert hash(mine) == hash(cls(**b))
    assert mine != theirs                       # another class: never equal, as dataclasses
    with pytest.raises(AttributeError):
        setattr(mine, cls._fields[0], 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(theirs, cls._fields[0], 0)
    first = cls._fields[0]
    changed = replace(mine, **{first: "new"})
    assert getattr(changed, first) == getattr(dataclasses.replace(theirs, **{first: "new"}), first) == "new"
    assert [getattr(changed, f) for f in cls._fields[1:]] == [getattr(mine, f) for f in cls._fields[1:]]


@pytest.mark.parametrize("cls", FROZEN, ids=lambda c: c.__name__)
def test_defaults_and_missing_arguments(cls):
    ref = reference(cls)
    required = [n for n, d in cls._defaults.items() if d is REQUIRED]
    given = {n: 1 for n in required}
    mine, theirs = cls(**given), ref(**given)
    assert [getattr(mine, f) for f in cls._fields] == [getattr(theirs, f.name) for f in dataclasses.fields(ref)]
    if required:
        with pytest.raises(TypeError):
            cls()
        with pytest.raises(TypeError):
            ref()
    with pytest.raises(TypeError):
        cls(**given, no_such_field=1)
    positional = [given.get(n, 7) for n in cls._fields]
    assert cls(*positional) == cls(**dict(zip(cls._fields, positional)))


def test_mutable_records_and_factories():
    from kexec_py.submit.backends import RecordingBackend
    a, b = RecordingBackend("x86_64"), RecordingBackend("x86_64")
    a.calls.append({"call": "sync"})
    assert b.calls == [] and a.calls is not b.calls          # a fresh list each, as default_factory
    a.log_path = "/tmp/x"                                     # not frozen
    with pytest.raises(TypeError):
        hash(a)                                               # as an eq=True, frozen=False dataclass


def test_allocator_is_a_mutable_record_that_checks_its_page_size():
    ref = dataclasses.make_dataclass("Allocator", [("free", object), ("page_size", object),
                                                   ("taken", object, dataclasses.field(default_factory=list))])
    a, b = Allocator([Range(0, 1 << 20)], 4096), Allocator([Range(0, 1 << 20)], 4096)
    assert repr(a) == repr(ref([Range(0, 1 << 20)], 4096)) and a == b
    a.take("x", Placement(size=1))
    assert a.taken == [Range(0x100000 - 4096, 0x100000)] and b.taken == []     # a fresh list each
    with pytest.raises(TypeError):
        hash(a)                                               # as an eq=True, frozen=False dataclass
    for bad in (2048, 12288):                                 # __post_init__'s check, now in __init__
        with pytest.raises(ValueError):
            Allocator([], bad)


def test_x86_64_keeps_x86s_page_size():
    from kexec_py.arch import x86, x86_64
    assert x86_64.PAGE_SIZE == x86.PAGE_SIZE == 4096      # x86_64.py no longer imports x86.py for it


def test_range_is_ordered_frozen_and_checked():
    assert sorted([Range(5, 6), Range(1, 9), Range(1, 3)]) == [Range(1, 3), Range(1, 9), Range(5, 6)]
    assert Range(1, 2) < Range(1, 3) <= Range(1, 3) < Range(2, 2)
    assert hash(Range(1, 2)) == hash(Range(1, 2)) and Range(1, 2) != (1, 2)
    with pytest.raises(ValueError):
        Range(3, 2)
    with pytest.raises(AttributeError):
        Range(1, 2).start = 0


@pytest.mark.parametrize("text", ["/boot/vmlinuz", "vmlinuz", "./a//b/", "/", "//x", "///x", ".", "", "a/./b",
                                  "../x", "x/.."])
def test_path_text_is_pathlibs(text):
    from pathlib import PurePosixPath
    assert path_text(text) == str(PurePosixPath(text))


# -- what the fast paths import ------------------------------------------------------------------

SLOW = {"dataclasses", "typing", "pathlib", "inspect", "construct", "elftools", "typer", "click", "shutil",
        "hashlib", "json", "lzma", "zlib", "kexec_py.arch.x86", "kexec_py.arch.x86_64_load", "kexec_py.plan.purgatory",
        "kexec_py.plan.elf_core", "kexec_py.structs.bootparam", "kexec_py.image.vmlinux", "kexec_py.image.uki"}


def _imported(args: list[str]) -> set[str]:
    """The modules a kexec-py command line imports: run in a fresh interpreter without the
    site module (whose .pth files, an editable install's finder or this machine's own, import
    modules of their own), with kexec_py and its dependencies on the path by hand; behind
    the guard pytest runs under, so the kexec calls fail with EPERM."""
    import cffi
    deps = str(Path(cffi.__file__).resolve().parent.parent)
    code = ("import sys\nfrom kexec_py.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('MODULES' + repr(sorted(sys.modules)))\n")
    p = subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{deps}"}, timeout=60)
    import ast
    return set(ast.literal_eval(p.stderr.rpartition("MODULES")[2]))


@pytest.mark.parametrize("args", [["-s", "-l", "KERNEL", "--initrd=INITRD", "--append=console=ttyS0"],
                                  ["-s", "-p", "KERNEL", "--initrd=INITRD"], ["-S"], ["-u", "-p"], ["--help"]],
                         ids=["-s -l", "-s -p", "-S", "-u -p", "--help"])
def test_fast_paths_import_nothing_slow(args, debian_kernel, tmp_path):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"\0" * 4096)
    args = [a.replace("KERNEL", str(debian_kernel)).replace("INITRD", str(initrd)) for a in args]
    found = _imported(args)
    assert "kexec_py.cli" in found
    assert not SLOW & found, sorted(SLOW & found)


# the x86_64 crash load (-p -c) needs hashlib, json (the purgatory's stored parse) and the
# x86 planners, but neither construct nor dataclasses (issue 13, second part)
CRASH_SLOW = {"dataclasses", "typing", "pathlib", "inspect", "construct", "elftools", "typer", "click", "shutil",
              "lzma", "kexec_py.structs.bootparam", "kexec_py.structs.elf", "kexec_py.structs.layout"}


def test_crash_load_imports_nothing_slow(debian_kernel, tmp_path):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(os.urandom(2 << 20))
    root = REPO / "tests" / "fixtures" / "systems" / "x86_64-qemu-2cpu"
    found = _imported(["--root", str(root), "--arch", "x86_64", "-p", "-c", str(debian_kernel),
                       f"--initrd={initrd}", "--append=console=ttyS0"])
    assert {"kexec_py.arch.x86_64_load", "kexec_py.arch.zeropage", "kexec_py.plan.elf_core",
            "kexec_py.plan.purgatory", "kexec_py.submit.syscalls"} <= found, "the crash load did not get to its call"
    assert not CRASH_SLOW & found, sorted(CRASH_SLOW & found)
