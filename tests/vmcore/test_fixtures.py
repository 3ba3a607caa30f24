"""kexec_py.vmcore.dmesg on extracts of real guests' vmcores (tests/fixtures/vmcore/README.md).

The expected output is Debian's vmcore-dmesg's in the guest's capture kernel, on the
whole /proc/vmcore; Debian's vmcore-dmesg run here on the extract must agree with it too,
which shows the extract is faithful.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from kexec_py.vmcore import core as C
from kexec_py.vmcore.dmesg import dmesg
from tests.vmcore.test_dmesg import run, vmcore_dmesg  # noqa: F401  (the fixture)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vmcore"
CORES = sorted(FIXTURES.glob("*.vmcore.gz"))
MACHINES = {"x86_64": C.EM_X86_64, "aarch64": C.EM_AARCH64, "ppc64le": C.EM_PPC64, "i386": C.EM_386}


def test_there_are_fixtures_for_every_guest_arch():
    assert sorted(p.name.split("-")[0] for p in CORES) == sorted(MACHINES)


@pytest.fixture(params=CORES, ids=lambda p: p.name.removesuffix(".vmcore.gz"))
def extract(request, tmp_path) -> tuple[Path, bytes]:
    core = tmp_path / request.param.name.split("-")[0]       # the arch: x86_64, aarch64, ...
    core.write_bytes(gzip.decompress(request.param.read_bytes()))
    expected = request.param.with_name(request.param.name.replace(".vmcore.gz", ".vmcore-dmesg.txt")).read_bytes()
    return core, expected


def ours(path: Path, by_header: bool = False) -> bytes:
    out = io.BytesIO()
    dmesg(str(path), out, by_header=by_header)
    return out.getvalue()


def test_the_log_is_the_one_vmcore_dmesg_printed_in_the_guest(extract):
    path, expected = extract
    assert len(expected.splitlines()) > 200 and b"KPY-TOKEN-" in expected
    assert ours(path).splitlines() == expected.splitlines()
    assert ours(path) == expected


def test_translation_through_vmcoreinfo_and_through_the_headers_agree(extract):
    path, expected = extract
    core = C.Vmcore.open(str(path))
    assert core.machine == MACHINES[path.name]
    assert core._rule() is not None, "VMCOREINFO lacks what this machine's address rule needs"
    assert ours(path, by_header=True) == expected


def test_debians_vmcore_dmesg_reads_the_extract_alike(extract, vmcore_dmesg):  # noqa: F811
    path, expected = extract
    result = run([vmcore_dmesg], path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
