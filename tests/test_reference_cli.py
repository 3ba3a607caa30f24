"""kexec-py's command line against Debian's kexec-tools 2.0.25, run side by side.

Both programs run in a private mount and network namespace (the fixture's
proc/ and sys/ trees bind-mounted over /proc and /sys, so both read the same
snapshot; no network interface to take down)
under strace, which logs the kexec calls, fakes success for kexec_load /
kexec_file_load and fails reboot with EPERM, all behind the syscall guard
(tests/guard.py), which fails with EPERM any call strace would let through: no
call reaches the host kernel. For each command line the
kexec calls made (name and flags) and the exit status must match, except where
kexec-py differs on purpose (listed in INTENDED).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import guard
from tests.conftest import SYSTEMS

FIXTURE = SYSTEMS / "x86_64-qemu-2cpu"
STRACE = ("strace -f -qq -e trace=execve,kexec_load,kexec_file_load,reboot "
          "-e inject=kexec_load,kexec_file_load:retval=0 -e inject=reboot:error=EPERM")

# argv (KERNEL stands for the Debian kernel) -> why kexec-py differs, or None
DEFAULT_A = "kexec-py defaults to -a like upstream since 2.0.27 (kexec_file_load); 2.0.25 defaults to -c"
CASES = {
    ("-p", "-u"): DEFAULT_A,
    ("-u", "-p"): DEFAULT_A,
    ("-u",): DEFAULT_A,
    ("-c", "-u", "-p"): None,                  # unload, then "No kernel specified": 255
    ("-c", "-p", "-u"): None,
    ("-s", "-p", "-u"): None,
    ("-s", "-u"): None,
    ("-p",): None,
    ("-l",): None,
    ("-u", "--initrd=/dev/null"): None,
    ("-e", "-x"): None,                        # nothing loaded: "Nothing has been loaded!", exit 1
    ("-p", "-c", "KERNEL", "--append=console=ttyS0"): "kexec-py carries the SETUP_RNG_SEED setup_data inside the setup segment (as the kernel's kexec_file_load does); kexec-tools gives it a segment of its own",
    ("-p", "-s", "KERNEL", "--append=console=ttyS0"): None,
    ("-l", "-s", "KERNEL", "--append=console=ttyS0"): None,
    ("-p", "-u", "-c"): None,
    ("-d", "-p", "-s", "KERNEL"): "kexec-py sets KEXEC_FILE_DEBUG for -d like upstream since 2.0.29; 2.0.25 does not",
}


def reference_kexec() -> tuple[Path, dict]:
    from tests.guest.fetch import fetch
    root = fetch("x86_64").root
    libs = f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu"
    return root / "sbin/kexec", {"LD_LIBRARY_PATH": libs}


def run_in_namespace(argv: list[str], env: dict, log: Path) -> tuple[int, list[str]]:
    """(exit status, the kexec calls made) of ``argv`` run on the snapshot; fails unless the
    program itself was started (strace logs its execve) and said something or called something."""
    out = log.with_suffix(".out")
    script = (f"mount --bind {FIXTURE}/proc /proc && mount --bind {FIXTURE}/sys /sys && "
              f"exec {STRACE} -o {log} {' '.join(map(_quote, argv))} >{out} 2>&1")
    p = subprocess.run(guard.guarded(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script]),
                       env={**os.environ, **env}, timeout=120)
    assert p.returncode != guard.GUARD_FAILED, "the guard could not be installed"
    assert log.exists(), "strace did not start: the comparison would prove nothing"
    lines = log.read_text().splitlines()
    started = [line for line in lines if f'execve("{argv[0]}"' in line and line.rstrip().endswith("= 0")]
    assert started, f"{argv[0]} never ran (strace log: {lines[:3]}): the comparison would prove nothing"
    calls = [_normalise(line) for line in lines if re.search(r"(kexec_\w+|reboot)\(", line)]
    assert calls or out.read_text().strip(), f"{argv[0]} neither called the kernel nor said why not"
    return p.returncode, calls


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _normalise(line: str) -> str:
    """Keep the call, its flags and its command line; drop pids, pointers, fds and segment lists."""
    name = re.search(r"(kexec_load|kexec_file_load|reboot)\(", line).group(1)
    if name == "kexec_load":
        m = re.search(r"kexec_load\((\w+), (\d+), .*, ([A-Z_|0-9x]+)\) =", line)
        return f"kexec_load entry={'NULL' if m.group(1) == 'NULL' else 'set'} nr={m.group(2)} flags={m.group(3)}"
    if name == "kexec_file_load":
        m = re.search(r'kexec_file_load\((-?\d+), (-?\d+), (\d+), ("[^"]*"|NULL), ([^)]*)\) =', line)
        kernel = "-1" if m.group(1) == "-1" else "fd"
        initrd = "-1" if m.group(2) == "-1" else "fd"
        return f"kexec_file_load kernel={kernel} initrd={initrd} cmdline={m.group(4)} flags={m.group(5)}"
    return "reboot"


@pytest.fixture(scope="module")
def reference():
    return reference_kexec()


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: " ".join(c))
def test_same_calls_and_exit_status_as_kexec_tools(case, reference, debian_kernel, tmp_path):
    binary, env = reference
    argv = [str(debian_kernel) if a == "KERNEL" else a for a in case]
    theirs = run_in_namespace([str(binary), *argv], env, tmp_path / "theirs.strace")
    ours = run_in_namespace([sys.executable, "-m", "kexec_py", "--root", str(FIXTURE), *argv],
                            {"PYTHONPATH": os.getcwd()}, tmp_path / "ours.strace")
    if CASES[case] is None:
        assert ours == theirs
    else:
        assert ours != theirs, f"no longer differs: drop it from INTENDED ({CASES[case]})"
