"""Run Debian's kexec-tools 2.0.25 and kexec-py on one system snapshot and
capture the kexec_load each would make.

kexec-tools runs in a private mount and network namespace with the snapshot's
proc/ and sys/ bind-mounted over /proc and /sys, with capture.c preloaded: its
``syscall()`` writes the segments down and returns 0 instead of entering the
kernel. kexec-py runs with its recording backend (``KEXEC_PY_RECORD``) and
``--root SNAPSHOT``, through ours.py, which writes the same files.

Both run behind the syscall guard (tests/guard.py, ``--kill``): a kexec_load,
kexec_file_load or reboot that gets past capture.c or the recorder kills the
program (SIGSYS) before it reaches the kernel, and the harness fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests import guard

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


class HarnessError(AssertionError):
    """The comparison could not be made: the test must fail, not skip."""


# per architecture: the guest cache's name, the dynamic loader, the multiarch triplet,
# gcc's flag, and the personality kexec-tools must see (i386 kexec-tools on an x86_64
# kernel would otherwise take the compat path)
ARCHES = {
    "x86_64": ("x86_64", "lib64/ld-linux-x86-64.so.2", "x86_64-linux-gnu", "-m64", None),
    "i386": ("i386", "lib/ld-linux.so.2", "i386-linux-gnu", "-m32", "i686"),
    "ppc64le": ("ppc64le", "lib/powerpc64le-linux-gnu/ld64.so.2", "powerpc64le-linux-gnu", None, None),
    "arm": ("armmp", "lib/ld-linux-armhf.so.3", "arm-linux-gnueabihf", None, None),
    "s390x": ("s390x", "lib/ld64.so.1", "s390x-linux-gnu", None, None),
}
# architectures the host cannot run: (cross compiler, qemu-user emulator, its Debian package).
# Under qemu-user the program sees the emulator's page size (the host's 4 KiB), so capture.c
# reports the snapshot's own (AT_PAGESZ in its proc/self/auxv) to getpagesize() and sysconf().
FOREIGN = {
    "ppc64le": ("powerpc64le-linux-gnu-gcc", "qemu-ppc64le", "qemu-user"),
    "arm": ("arm-linux-gnueabihf-gcc", "qemu-arm", "qemu-user"),
    "s390x": ("s390x-linux-gnu-gcc", "qemu-s390x", "qemu-user"),
}
AT_NULL, AT_PAGESZ = 0, 6


@dataclass(frozen=True)
class Reference:
    arch: str
    binary: Path
    loader: Path
    libpath: str
    personality: str | None
    root: Path | None = None            # a foreign architecture's root, for qemu-user's -L

    def argv(self, lib: Path, args: list[str]) -> list[str]:
        """Debian's kexec through Debian's own dynamic loader, with ``lib`` preloaded (under
        qemu-user for a foreign architecture)."""
        prefix = ["setarch", self.personality] if self.personality else []
        if self.arch in FOREIGN:
            prefix = [FOREIGN[self.arch][1], "-L", str(self.root)]
        return [*prefix, str(self.loader), "--preload", str(lib), "--library-path", self.libpath,
                str(self.binary), *args]


def reference_kexec(arch: str = "x86_64") -> Reference:
    """Debian's /sbin/kexec for ``arch``, unpacked into the guest cache (fetched on first use)."""
    from tests.guest.fetch import fetch
    cache, loader, triplet, _, personality = ARCHES[arch]
    root = fetch(cache).root
    ref = Reference(arch, root / "sbin/kexec", root / loader,
                    f"{root}/lib/{triplet}:{root}/usr/lib/{triplet}", personality, root)
    if arch in FOREIGN and not shutil.which(FOREIGN[arch][1]):
        raise HarnessError(f"{FOREIGN[arch][1]} is not installed: apt-get install {FOREIGN[arch][2]} "
                           "(scripts/test-all installs it)")
    for path in (ref.binary, ref.loader):
        if not path.exists():
            raise HarnessError(f"{path} is missing: run scripts/guest-deps --arch {cache}")
    return ref


def build_capture_library(dest: Path, arch: str = "x86_64") -> Path:
    """Compile capture.c into an LD_PRELOAD library for ``arch`` (gcc is required; the
    library is freestanding, so -m32 needs no 32-bit C library on the host)."""
    for tool in ("gcc", "unshare", "setarch"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} is not installed; the differential tests need gcc and util-linux")
    compiler = [FOREIGN[arch][0]] if arch in FOREIGN else ["gcc", ARCHES[arch][3]]
    if not shutil.which(compiler[0]):
        raise HarnessError(f"{compiler[0]} is not installed (scripts/test-all installs it)")
    lib = dest / f"capture-{arch}.so"
    subprocess.run([*compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-ffreestanding", "-nostdlib", "-fno-stack-protector", "-o", str(lib),
                    str(HERE / "capture.c")], check=True)
    return lib


@dataclass(frozen=True)
class Run:
    out: Path               # the capture directory
    returncode: int
    stderr: str


def _spawn(argv: list[str], out: Path, env: dict) -> subprocess.Popen:
    out.mkdir(parents=True)
    return subprocess.Popen(guard.guarded(argv, kill=True), env={**os.environ, **env}, cwd=REPO,
                            stdout=subprocess.DEVNULL,
                            stderr=open(out / "stderr.txt", "w"))


def _finish(proc: subprocess.Popen, out: Path, what: str) -> Run:
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise HarnessError(f"{what} did not finish in 120 s")
    stderr = (out / "stderr.txt").read_text()
    if proc.returncode == guard.GUARD_FAILED and stderr.startswith("guard:"):
        raise HarnessError(f"{what} was not run: {stderr[-1000:]}")
    if guard.attempted(proc.returncode):
        raise HarnessError(f"{what}: a kexec system call got past the stand-in (the guard killed it): "
                           f"{stderr[-1000:]}")
    return Run(out, proc.returncode, stderr)


def snapshot_page_size(fixture: Path) -> int:
    """AT_PAGESZ from the snapshot's proc/self/auxv (word pairs in the guest's word size and byte
    order, as captured: big-endian u64 on s390x): the reading whose vector
    ends with AT_NULL after a power-of-two AT_PAGESZ."""
    import struct
    auxv = fixture / "proc/self/auxv"
    if not auxv.exists():
        raise HarnessError(f"{auxv} is missing: the snapshot does not say its page size")
    data = auxv.read_bytes()
    for fmt in ("<QQ", ">QQ", "<II", ">II"):
        step = struct.calcsize(fmt)
        pairs = list(struct.iter_unpack(fmt, data[:len(data) // step * step]))
        page = dict(pairs).get(AT_PAGESZ)
        if (AT_NULL, 0) in pairs and page and not page & (page - 1):
            return page
    raise HarnessError(f"{auxv} has no AT_PAGESZ")


def spawn_theirs(ref: Reference, lib: Path, fixture: Path, args: list[str], out: Path) -> subprocess.Popen:
    page = [f"KEXEC_CAPTURE_PAGE_SIZE={snapshot_page_size(fixture)}"] if ref.arch in FOREIGN else []
    inner = ["env", f"KEXEC_CAPTURE_DIR={out}", *page, *ref.argv(lib, args)]
    script = (f"mount --bind {shlex.quote(str(fixture / 'proc'))} /proc && "
              f"mount --bind {shlex.quote(str(fixture / 'sys'))} /sys && "
              f"exec {shlex.join(inner)}")
    return _spawn(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script], out, {})


def spawn_ours(arch: str, fixture: Path, args: list[str], out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tests.differential.ours", str(out),
            "--", "--arch", arch, "--root", str(fixture), *args]
    return _spawn(argv, out, {"KEXEC_PY_RECORD": str(out / "record.jsonl"),
                              "PYTHONPATH": str(REPO)})


def run_both(ref: Reference, lib: Path, fixture: Path, args: list[str], work: Path) -> tuple[Run, Run]:
    """kexec-tools and kexec-py on the same snapshot and arguments, side by side."""
    theirs_p = spawn_theirs(ref, lib, fixture, args, work / "theirs")
    ours_p = spawn_ours(ref.arch, fixture, args, work / "ours")
    theirs = _finish(theirs_p, work / "theirs", "kexec-tools")
    ours = _finish(ours_p, work / "ours", "kexec-py")
    _check_recording(ours.out)
    return theirs, ours


def _check_recording(out: Path) -> None:
    """The dumped segments are exactly what the recording backend was given."""
    from tests.differential.facts import file_load_facts, read_calls
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
        else:
            got = file_load_facts(out, call)
            want = {"flags": rec["flags"], "cmdline_len": rec["cmdline_len"],
                    "kernel_sha256": rec["kernel_sha256"], "initrd_sha256": rec["initrd_sha256"]}
            if {**{k: got[k] for k in ("flags", "kernel_sha256", "initrd_sha256")},
                    "cmdline_len": len(got["cmdline"])} != want:
                raise HarnessError("kexec-py: the dumped kexec_file_load differs from what the recording backend got")
