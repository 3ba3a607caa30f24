"""`kdump-py dmesg` is kexec_py.vmcore.dmesg behind the kdump-py command: on a real vmcore
extract from a guest it prints what that guest's Debian vmcore-dmesg printed."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from tests import guard

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "vmcore"


@pytest.mark.parametrize("core", sorted(FIXTURES.glob("*.vmcore.gz")), ids=lambda p: p.name.split("-")[0])
def test_kdump_py_dmesg_prints_what_vmcore_dmesg_printed(core, tmp_path):
    vmcore = tmp_path / "vmcore"
    vmcore.write_bytes(gzip.decompress(core.read_bytes()))
    expected = core.with_name(core.name.replace(".vmcore.gz", ".vmcore-dmesg.txt")).read_bytes()
    out = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py.kdump", "dmesg", str(vmcore)]),
                         capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected


def test_kdump_py_dmesg_refuses_a_file_that_is_no_vmcore(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a vmcore\n")
    out = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py.kdump", "dmesg", str(bad)]),
                         capture_output=True, text=True)
    assert out.returncode != 0 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and str(bad) in out.stderr, out.stderr
