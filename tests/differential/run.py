"""Run Debian's kexec-tools 2.0.25 and kexec-py on one system snapshot and
capture the kexec_load each would make.

kexec-tools runs in a private mount and network namespace with the snapshot's
proc/ and sys/ bind-mounted over /proc and /sys, with capture.c preloaded: its
``syscall()`` writes the segments down and returns 0 instead of entering the
kernel. kexec-py runs with its recording backend (``KEXEC_PY_RECORD``) and
``--root SNAPSHOT``, through ours.py, which writes the same files.

Both run under strace, which logs any kexec_load, kexec_file_load or reboot
that still reached the kernel and makes it fail with EPERM: the harness fails
if the log names one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUARD = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=kexec_load,kexec_file_load,reboot",
         "-e", "inject=kexec_load,kexec_file_load,reboot:error=EPERM"]
KEXEC_CALL = re.compile(r"\b(kexec_load|kexec_file_load|reboot)\(")


class HarnessError(AssertionError):
    """The comparison could not be made: the test must fail, not skip."""


@dataclass(frozen=True)
class Reference:
    binary: Path
    libpath: str


def reference_kexec() -> Reference:
    """Debian's /sbin/kexec, unpacked into the guest cache (fetched on first use)."""
    from tests.guest.fetch import fetch
    root = fetch("x86_64").root
    binary = root / "sbin/kexec"
    if not binary.exists():
        raise HarnessError(f"{binary} is missing: run scripts/guest-deps --arch x86_64")
    return Reference(binary, f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu")


def build_capture_library(dest: Path) -> Path:
    """Compile capture.c into an LD_PRELOAD library (gcc is required)."""
    for tool in ("gcc", "strace", "unshare"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} is not installed; the differential tests need gcc, strace and unshare")
    lib = dest / "capture.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(lib),
                    str(HERE / "capture.c"), "-ldl"], check=True)
    return lib


@dataclass(frozen=True)
class Run:
    out: Path               # the capture directory
    returncode: int
    stderr: str


def _spawn(argv: list[str], out: Path, env: dict) -> subprocess.Popen:
    out.mkdir(parents=True)
    return subprocess.Popen(argv, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=open(out / "stderr.txt", "w"))


def _finish(proc: subprocess.Popen, out: Path, what: str) -> Run:
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise HarnessError(f"{what} did not finish in 120 s")
    guard = out / "strace.log"
    if not guard.exists():
        raise HarnessError(f"{what}: strace did not start, so nothing proves the host kernel was left alone")
    leaked = [line for line in guard.read_text().splitlines() if KEXEC_CALL.search(line)]
    if leaked:
        raise HarnessError(f"{what}: a kexec system call reached the kernel (strace made it fail): {leaked}")
    return Run(out, proc.returncode, (out / "stderr.txt").read_text())


def spawn_theirs(ref: Reference, lib: Path, fixture: Path, args: list[str], out: Path) -> subprocess.Popen:
    inner = ["env", f"LD_PRELOAD={lib}", f"KEXEC_CAPTURE_DIR={out}", f"LD_LIBRARY_PATH={ref.libpath}",
             str(ref.binary), *args]
    script = (f"mount --bind {shlex.quote(str(fixture / 'proc'))} /proc && "
              f"mount --bind {shlex.quote(str(fixture / 'sys'))} /sys && "
              f"exec {shlex.join([*GUARD, '-o', str(out / 'strace.log'), *inner])}")
    return _spawn(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script], out, {})


def spawn_ours(fixture: Path, args: list[str], out: Path) -> subprocess.Popen:
    argv = [*GUARD, "-o", str(out / "strace.log"), sys.executable, "-m", "tests.differential.ours", str(out),
            "--", "--root", str(fixture), *args]
    return _spawn(argv, out, {"KEXEC_PY_RECORD": str(out / "record.jsonl"),
                              "PYTHONPATH": str(REPO)})


def run_both(ref: Reference, lib: Path, fixture: Path, args: list[str], work: Path) -> tuple[Run, Run]:
    """kexec-tools and kexec-py on the same snapshot and arguments, side by side."""
    theirs_p = spawn_theirs(ref, lib, fixture, args, work / "theirs")
    ours_p = spawn_ours(fixture, args, work / "ours")
    theirs = _finish(theirs_p, work / "theirs", "kexec-tools")
    ours = _finish(ours_p, work / "ours", "kexec-py")
    _check_recording(ours.out)
    return theirs, ours


def _check_recording(out: Path) -> None:
    """The dumped segments are exactly what the recording backend was given."""
    from tests.differential.facts import read_calls
    import hashlib
    record = out / "record.jsonl"
    logged = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    logged = [c for c in logged if c["call"] in ("kexec_load", "kexec_file_load")]
    dumped = read_calls(out)
    if len(logged) != len(dumped):
        raise HarnessError(f"kexec-py: {len(logged)} calls recorded, {len(dumped)} dumped")
    for rec, call in zip(logged, dumped):
        if rec["call"] != call.name:
            raise HarnessError(f"kexec-py: recorded {rec['call']}, dumped {call.name}")
        if call.name == "kexec_load":
            got = [{"bufsz": len(s.buf), "mem": s.mem, "memsz": s.memsz,
                    "sha256": hashlib.sha256(s.buf).hexdigest()} for s in call.segments]
            if got != rec["segments"] or rec["entry"] != call.args["entry"] or rec["flags"] != call.args["flags"]:
                raise HarnessError("kexec-py: the dumped segments differ from what the recording backend got")
