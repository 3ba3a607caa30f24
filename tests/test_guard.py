"""The syscall guard (tests/guard.py) must fail kexec_load, kexec_file_load and reboot
for every ABI a process on this machine can call through, and nothing else.

Two ways of checking it:

* its BPF program runs in a small interpreter written here, over seccomp_data made
  here, against syscall numbers read from the C library's kernel headers (every call
  of each ABI must be allowed but the three): this covers the ABIs this machine cannot
  run (aarch64, arm) and the ones no Python call reaches (x32);
* the kernel runs it, in a child process. The child first installs a safety net of
  its own (a filter written here, not by guard.py, that answers ENOTRECOVERABLE for
  the three calls), then the guard, checks /proc/self/status, and only then makes the
  calls, with arguments the kernel would refuse (EINVAL) were they ever to reach it.
  The newest filter's errno wins, so EPERM is the guard's answer, ENOTRECOVERABLE
  says the guard let a call through (to the net, never to the kernel), and a child
  that cannot install both exits before any call.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests import guard

REPO = Path(__file__).resolve().parent.parent
GUARDED = ("kexec_load", "kexec_file_load", "reboot")
NET_ERRNO = errno.ENOTRECOVERABLE
X32_BIT = 0x40000000

# linux/audit.h values, written out here rather than taken from guard.py
ARCH = {"x86_64": 0xC000003E, "i386": 0x40000003, "aarch64": 0xC00000B7, "arm": 0x40000028}
UNKNOWN_ARCHES = {"ppc64le": 0xC0000015, "s390x": 0x80000016, "riscv64": 0xC00000F3,
                  "x86_64 without the 64-bit bit": 0x4000003E, "aarch64 big-endian": 0x800000B7, "none": 0}
# arm's numbers from arch/arm/tools/syscall.tbl: no header on an x86_64 machine has them
ARM = {"kexec_load": 347, "kexec_file_load": 401, "reboot": 88}

RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000


# --------------------------------------------------------------------------- syscall tables

def _header(pattern: str) -> dict[str, int]:
    paths = sorted(glob.glob(pattern))
    assert paths, f"no {pattern}: the kernel headers (linux-libc-dev, with gcc) are needed"
    numbers = {}
    for m in re.finditer(r"^#define __NR_(\w+)\s+(?:\(__X32_SYSCALL_BIT \+ (\d+)\)|(\d+))\s*$",
                         Path(paths[0]).read_text(), re.M):
        if m[1] != "syscalls":
            numbers[m[1]] = X32_BIT + int(m[2]) if m[2] else int(m[3])
    return numbers


def abi_tables() -> dict[str, dict[str, int]]:
    """Every call of each ABI, by name: x86_64, x32 (with its 0x40000000 bit), i386, the
    generic table aarch64 uses; arm's three only."""
    return {"x86_64": _header("/usr/include/*/asm/unistd_64.h"),
            "x32": _header("/usr/include/*/asm/unistd_x32.h"),
            "i386": _header("/usr/include/*/asm/unistd_32.h"),
            "aarch64": _header("/usr/include/asm-generic/unistd.h"),
            "arm": dict(ARM)}


def arch_of(abi: str) -> int:
    return ARCH["x86_64" if abi == "x32" else abi]


# --------------------------------------------------------------------------- a BPF interpreter

def run_bpf(code: bytes, nr: int, arch: int, args=(0,) * 6) -> int:
    """Classic BPF as the kernel runs a seccomp filter, for the instructions a filter of
    this kind needs; anything else fails the test. Returns the filter's verdict."""
    assert len(code) % 8 == 0 and 0 < len(code) // 8 <= 4096
    insns = [struct.unpack_from("=HBBI", code, at) for at in range(0, len(code), 8)]
    data = struct.pack("=iIQ6Q", nr, arch, 0x401000, *args)
    a, pc = 0, 0
    for _ in range(len(insns)):               # no backward jumps: each step moves forward
        assert pc < len(insns), "ran off the end of the program"
        op, jt, jf, k = insns[pc]
        pc += 1
        if op == 0x20:                         # BPF_LD | BPF_W | BPF_ABS
            assert k % 4 == 0 and k + 4 <= len(data), f"load at {k}"
            a = struct.unpack_from("=I", data, k)[0]
        elif op == 0x54:                       # BPF_ALU | BPF_AND | BPF_K
            a &= k
        elif op == 0x15:                       # BPF_JMP | BPF_JEQ | BPF_K
            pc += jt if a == k else jf
        elif op == 0x05:                       # BPF_JMP | BPF_JA
            pc += k
        elif op == 0x06:                       # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError(f"instruction {op:#06x} at {pc - 1} is not one a seccomp filter here needs")
    raise AssertionError("no verdict")


def test_interpreter_follows_jumps_and_refuses_what_it_does_not_know():
    ret = lambda k: struct.pack("=HBBI", 0x06, 0, 0, k)                            # noqa: E731
    prog = struct.pack("=HBBI", 0x20, 0, 0, 0) + struct.pack("=HBBI", 0x15, 1, 0, 7) + ret(1) + ret(2)
    assert run_bpf(prog, 7, 0) == 2 and run_bpf(prog, 8, 0) == 1
    with pytest.raises(AssertionError):
        run_bpf(struct.pack("=HBBI", 0x07, 0, 0, 0) + ret(0), 0, 0)                 # BPF_MISC
    with pytest.raises(AssertionError):
        run_bpf(struct.pack("=HBBI", 0x15, 5, 5, 0), 0, 0)                          # jumps out


# --------------------------------------------------------------------------- the program

def test_the_three_calls_are_denied_for_every_abi():
    prog = guard.program()
    eperm = RET_ERRNO | errno.EPERM
    for abi, table in abi_tables().items():
        for name in GUARDED:
            if name in table:                  # i386 has no kexec_file_load
                assert run_bpf(prog, table[name], arch_of(abi)) == eperm, (abi, name)
    assert "kexec_file_load" not in abi_tables()["i386"]


def test_every_other_call_is_allowed():
    prog = guard.program()
    for abi, table in abi_tables().items():
        others = set(range(460)) - {table[n] for n in GUARDED if n in table} if abi == "arm" else \
            {nr for name, nr in table.items() if name not in GUARDED}
        assert len(others) > 100, abi
        wrong = sorted(nr for nr in others if run_bpf(prog, nr, arch_of(abi)) != RET_ALLOW)
        assert wrong == [], f"{abi}: calls denied: {wrong[:10]}"


def test_strace_skipping_a_call_is_allowed():
    """strace's fault injection turns the call into number -1 (then sets the result
    itself): the guard must let that through, or strace could not inject under it."""
    assert run_bpf(guard.program(), -1, ARCH["x86_64"]) == RET_ALLOW


def test_an_unknown_abi_is_killed_whatever_the_call():
    prog = guard.program()
    for what, arch in UNKNOWN_ARCHES.items():
        for nr in (0, 20, 39, 88, 104, 246, 283, 320):
            assert run_bpf(prog, nr, arch) == RET_KILL_PROCESS, (what, nr)


def test_the_answer_can_be_another_errno_or_a_kill():
    nr = abi_tables()["x86_64"]["kexec_load"]
    assert run_bpf(guard.program(guard.deny_action(errno=NET_ERRNO)), nr, ARCH["x86_64"]) == RET_ERRNO | NET_ERRNO
    assert run_bpf(guard.program(guard.deny_action(kill=True)), nr, ARCH["x86_64"]) == RET_KILL_PROCESS


# --------------------------------------------------------------------------- in the kernel

def _native() -> str:
    machine = os.uname().machine
    assert machine in ("x86_64", "aarch64"), f"no live guard test for {machine}"
    return machine


def _net_program() -> bytes:
    """The child's safety net: ERRNO(ENOTRECOVERABLE) for the three calls of this
    machine's ABIs, written independently of guard.py. Each block: load arch, skip the
    block unless it matches, load the number (x86_64: less the x32 bit), skip the return
    unless it matches."""
    tables = abi_tables()
    abis = ("x86_64", "x32", "i386") if _native() == "x86_64" else ("aarch64", "arm")
    ins = lambda op, k, jt=0, jf=0: struct.pack("=HBBI", op, jt, jf, k)             # noqa: E731
    out = b""
    for abi in abis:
        for name in GUARDED:
            if name not in tables[abi]:
                continue
            masked = abi in ("x86_64", "x32")
            tail = [ins(0x20, 0)] + ([ins(0x54, ~X32_BIT & 0xFFFFFFFF)] if masked else []) + \
                   [ins(0x15, tables[abi][name] & ~X32_BIT if masked else tables[abi][name], 0, 1),
                    ins(0x06, RET_ERRNO | NET_ERRNO)]
            out += ins(0x20, 4) + ins(0x15, arch_of(abi), 0, len(tail)) + b"".join(tail)
    return out + ins(0x06, RET_ALLOW)


def _harmless_calls() -> dict[str, tuple]:
    """name -> (number, arguments). Each would fail with EINVAL in the kernel before it
    did anything: kexec_load with more segments than KEXEC_SEGMENT_MAX and unknown flag
    bits, kexec_file_load with an unknown flag, reboot with wrong magic numbers."""
    tables = abi_tables()
    load, file_load = (0, 0xFFFF, 0, 0xDEAD0008), (-1, -1, 0, 0, 0x80000000)
    reboot = (0, 0, 0x45584543, 0)                      # LINUX_REBOOT_CMD_KEXEC, magic 0
    calls = {}
    for abi in (("x86_64", "x32") if _native() == "x86_64" else ("aarch64",)):
        t = tables[abi]
        calls[f"{abi} kexec_load"] = (t["kexec_load"], load)
        calls[f"{abi} kexec_file_load"] = (t["kexec_file_load"], file_load)
        calls[f"{abi} reboot"] = (t["reboot"], reboot)
    if _native() == "x86_64":
        calls["i386 kexec_load"] = (tables["i386"]["kexec_load"], load)
        calls["i386 reboot"] = (tables["i386"]["reboot"], reboot)
    return calls


def _int80(ffi, nr: int, args) -> int:
    """The i386 ABI from this 64-bit process: int 0x80 (eax = number, ebx, ecx, edx, esi);
    returns eax, a negative errno on failure."""
    import mmap
    p32 = lambda v: struct.pack("<I", v & 0xFFFFFFFF)                               # noqa: E731
    a1, a2, a3, a4 = (list(args) + [0, 0, 0, 0])[:4]
    code = (b"\x53" + b"\xb8" + p32(nr) + b"\xbb" + p32(a1) + b"\xb9" + p32(a2) + b"\xba" + p32(a3) +
            b"\xbe" + p32(a4) + b"\xcd\x80" + b"\x5b\xc3")      # push rbx; mov; int 0x80; pop rbx; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    return ffi.cast("int(*)(void)", ffi.from_buffer(page))()


def probe(spec: str) -> None:
    """In the child: net, guard(s), check, then the calls; prints a JSON line per step."""
    spec = json.loads(spec)
    ffi, libc = guard._ffi()
    ulong = lambda v: ffi.cast("unsigned long", v)                                 # noqa: E731
    try:
        code = _net_program()
        net = ffi.new("struct sock_filter[]", len(code) // 8)
        ffi.memmove(net, code, len(code))
        fprog = ffi.new("struct sock_fprog *", {"len": len(code) // 8, "filter": net})
        before = int(guard.status()["Seccomp_filters"])
        if (libc.prctl(38, ulong(1), ulong(0), ulong(0), ulong(0))                  # PR_SET_NO_NEW_PRIVS
                or libc.prctl(22, ulong(2), fprog, ulong(0), ulong(0))):            # PR_SET_SECCOMP, FILTER
            raise OSError(ffi.errno, "the safety net was not installed")
        for kw in spec["guards"]:
            guard.install(**kw, tables=guard.TABLES if not spec.get("drop") else
                          [(n, a, m, tuple(x for x in nrs if x not in spec["drop"])) for n, a, m, nrs in guard.TABLES])
        status = guard.status()
        if status["Seccomp"] != "2" or int(status["Seccomp_filters"]) != before + 1 + len(spec["guards"]):
            raise OSError(0, f"filters not in place: {status}")
    except Exception as e:                     # noqa: BLE001: exit before any call, whatever went wrong
        print(json.dumps({"error": repr(e)}), flush=True)
        os._exit(3)
    print(json.dumps({"status": status}), flush=True)
    out = {}
    ffi.errno = 0
    out["getpid"] = libc.syscall(ffi.cast("long", abi_tables()[_native()]["getpid"])) == os.getpid()
    if _native() == "x86_64":
        out["i386 getpid"] = _int80(ffi, abi_tables()["i386"]["getpid"], ()) == os.getpid()
    for name, (nr, args) in _harmless_calls().items():
        if name.startswith("i386 "):
            ret = _int80(ffi, nr, args)
            out[name] = errno.errorcode.get(-ret, str(ret)) if ret < 0 else f"returned {ret}"
        else:
            ffi.errno = 0
            ret = libc.syscall(ffi.cast("long", nr), *(ffi.cast("long", a) for a in args))
            out[name] = errno.errorcode.get(ffi.errno, str(ffi.errno)) if ret == -1 else f"returned {ret}"
        print(json.dumps({"call": name, "result": out[name]}), flush=True)
    print(json.dumps({"results": out}), flush=True)
    os._exit(0)


def run_probe(guards: list[dict], drop=(), outer: list[str] = ()) -> tuple[int, list[dict]]:
    spec = json.dumps({"guards": guards, "drop": list(drop)})
    argv = [*outer, sys.executable, "-c", "import sys; from tests.test_guard import probe; probe(sys.argv[1])", spec]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines and "error" not in lines[0], f"the child could not install its filters: {lines} {p.stderr[-2000:]}"
    assert lines[0]["status"]["Seccomp"] == "2"
    return p.returncode, lines


def results(lines: list[dict]) -> dict:
    (done,) = [line["results"] for line in lines if "results" in line]
    return done


def test_the_net_alone_answers_every_call():
    """Without the guard, every call the probe makes meets the net: so the EPERM below
    is the guard's, and a call the guard lets through is seen (and stopped)."""
    code, lines = run_probe([])
    assert code == 0
    got = results(lines)
    assert got.pop("getpid") and got.pop("i386 getpid", True)
    assert got == {name: "ENOTRECOVERABLE" for name in _harmless_calls()}


def test_a_guarded_child_gets_eperm_for_each_call_and_nothing_else_changes():
    code, lines = run_probe([{}])
    assert code == 0
    got = results(lines)
    assert got.pop("getpid") is True, "getpid through syscall() must still work"
    assert got.pop("i386 getpid", True) is True, "getpid through int 0x80 must still work"
    assert got == {name: "EPERM" for name in _harmless_calls()}


def test_a_call_missing_from_the_filter_is_caught():
    """The probe tells a guard that lets a call through: here one built without
    kexec_file_load (the net stops the call)."""
    tables = abi_tables()
    code, lines = run_probe([{}], drop=[tables["x86_64"]["kexec_file_load"], tables["aarch64"]["kexec_file_load"]])
    got = results(lines)
    assert got[f"{_native()} kexec_file_load"] == "ENOTRECOVERABLE"
    assert got[f"{_native()} kexec_load"] == "EPERM"


def test_the_filter_nests_with_itself_and_with_another_errno():
    code, lines = run_probe([{}, {}])
    assert code == 0 and set(results(lines).values()) - {True} == {"EPERM"}
    code, lines = run_probe([{}, {"errno": errno.EACCES}])      # the newest filter's errno is the answer
    assert code == 0 and set(results(lines).values()) - {True} == {"EACCES"}


def test_the_filter_holds_under_strace(tmp_path):
    """strace (ptrace, which sees a call before seccomp does) logs the calls, and the
    guard still fails them: strace can log under the guard, and the guard holds under strace."""
    import shutil
    assert shutil.which("strace"), "strace is needed (scripts/test-all installs it)"
    log = tmp_path / "strace.log"
    code, lines = run_probe([{}], outer=["strace", "-f", "-qq", "-e", "trace=kexec_load,kexec_file_load,reboot",
                                         "-o", str(log)])
    assert code == 0 and set(results(lines).values()) - {True} == {"EPERM"}
    traced = [line for line in log.read_text().splitlines()
              if re.search(r"\b(kexec_load|kexec_file_load|reboot)\(", line)]
    assert len(traced) == len(_harmless_calls()), traced
    assert all(line.endswith("= -1 EPERM (Operation not permitted)") for line in traced), traced


def test_kill_mode_kills_at_the_first_call():
    code, lines = run_probe([{}, {"kill": True}])
    assert guard.attempted(code) and code == -signal.SIGSYS
    assert [line for line in lines if "call" in line] == [], "no call may return under --kill"


# --------------------------------------------------------------------------- the launcher

def test_the_launcher_installs_the_filter_then_execs():
    p = subprocess.run(guard.guarded(["cat", "/proc/self/status"]), capture_output=True, text=True, check=True)
    fields = dict(re.findall(r"^(Seccomp|NoNewPrivs):\s*(\S+)$", p.stdout, re.M))
    assert fields == {"Seccomp": "2", "NoNewPrivs": "1"}
    mine = int(guard.status()["Seccomp_filters"])
    assert re.search(rf"^Seccomp_filters:\s*{mine + 1}$", p.stdout, re.M)
    assert subprocess.run(guard.guarded(["sh", "-c", "exit 7"])).returncode == 7


def test_the_launcher_runs_nothing_when_it_cannot_guard(tmp_path):
    """On a machine whose ABIs it does not know, the launcher refuses: exit 125, and the
    command is not run."""
    marker = tmp_path / "ran"
    code = ("import os, sys; from tests import guard; real = os.uname(); "
            "os.uname = lambda: os.uname_result((*real[:4], 'ppc64le')); sys.exit(guard.main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "--", "touch", str(marker)], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == guard.GUARD_FAILED and "ppc64le" in p.stderr
    assert not marker.exists()


def test_install_refuses_a_process_with_threads():
    code = ("import threading, time, sys; from tests import guard\n"
            "threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n"
            "try:\n    guard.install()\nexcept guard.GuardError as e:\n    print(e); sys.exit(0)\nsys.exit(1)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0 and "threads" in p.stdout


def test_the_committed_ffi_module_is_current(tmp_path):
    out = tmp_path / "_guard_ffi.py"
    guard.ffi_builder().emit_python_code(str(out))
    assert out.read_text() == (REPO / "tests" / "_guard_ffi.py").read_text(), "run python3 tests/guard.py --emit-ffi"


# --------------------------------------------------------------------------- where it is used

def test_this_pytest_process_is_guarded():
    """tests/conftest.py installs the filter in pytest itself, whatever started it."""
    assert guard.status()["Seccomp"] == "2"
    assert guard.status()["NoNewPrivs"] == "1"


def test_test_all_runs_pytest_under_the_launcher():
    last = (REPO / "scripts" / "test-all").read_text().rstrip().splitlines()[-1]
    assert re.match(r"exec python3 tests/guard\.py -- python3 -m pytest\b", last), last
