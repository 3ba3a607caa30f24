#!/usr/bin/env python3
"""The syscall guard: a seccomp filter that fails kexec_load, kexec_file_load and
reboot with EPERM, in the process that installs it and in every process started
after it (a filter is inherited across fork and exec and cannot be removed).
Filters stack: under another filter, or under strace, this one still holds.

    python3 tests/guard.py [--kill | --errno NAME] -- CMD ARGS...

installs the filter and execs CMD (exit 125 when the filter cannot be installed:
CMD never runs unguarded). ``--kill`` kills the process that tries one of the
three calls (SIGSYS) instead of failing the call, for tests in which any attempt
is the failure: it overrides an outer EPERM filter. ``--errno NAME`` answers with
another errno, to tell this filter's answer from an outer one's.

In pytest: ``guarded(cmd)`` puts the launcher in front of a command line, and
``attempted(returncode)`` says whether a ``--kill`` guard killed it.
scripts/test-all runs all of pytest under the launcher, and tests/conftest.py
installs the filter in the pytest process too.

The filter is classic BPF over ``struct seccomp_data`` (linux/seccomp.h): it
checks the ABI (``arch``) first, since one process can make calls through more
than one (int 0x80 from an x86_64 process is the i386 ABI, with i386 numbers),
and kills the process on an ABI it does not know rather than let its numbers
through. Constants are from the uapi headers linux/seccomp.h, linux/filter.h,
linux/bpf_common.h, linux/audit.h, linux/elf-em.h, linux/prctl.h and the
syscall tables (asm/unistd_{64,32,x32}.h, asm-generic/unistd.h, arm's
syscall.tbl). tests/test_guard.py runs the program in a BPF interpreter for
every ABI, and in the kernel in a child process.
"""

from __future__ import annotations

import os
import struct
import sys

# linux/audit.h: EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000)
AUDIT_ARCH_X86_64 = 0xC000003E     # EM_X86_64 62; x32 calls come with this arch too
AUDIT_ARCH_I386 = 0x40000003       # EM_386 3
AUDIT_ARCH_AARCH64 = 0xC00000B7    # EM_AARCH64 183
AUDIT_ARCH_ARM = 0x40000028        # EM_ARM 40
X32_SYSCALL_BIT = 0x40000000       # asm/unistd_x32.h: x32 numbers are this bit + a number

# Per ABI: the arch value, a mask applied to the number first, and the numbers of
# kexec_load, kexec_file_load and reboot (i386 has no kexec_file_load). On x86_64 the
# mask drops the x32 bit, so one list covers both: x32's kexec_load is its own
# compat entry, 528 (x32 bit + 528); 528 without the bit is no x86_64 call at all.
TABLES = (
    ("x86_64", AUDIT_ARCH_X86_64, ~X32_SYSCALL_BIT & 0xFFFFFFFF, (246, 320, 169, 528)),
    ("i386", AUDIT_ARCH_I386, None, (283, 88)),
    ("aarch64", AUDIT_ARCH_AARCH64, None, (104, 294, 142)),
    ("arm", AUDIT_ARCH_ARM, None, (347, 401, 88)),   # aarch64's 32-bit compat ABI (EABI)
)
# `uname -m` -> whether every ABI its processes can call through is in TABLES
KNOWN_HOSTS = {"x86_64", "i386", "i486", "i586", "i686", "aarch64"}

# linux/seccomp.h
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_DATA = 0x0000FFFF
SECCOMP_MODE_FILTER = 2
# linux/prctl.h
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
# linux/bpf_common.h: class | size | mode, class | op | source
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20
BPF_ALU_AND_K = 0x04 | 0x50 | 0x00
BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00
BPF_RET_K = 0x06 | 0x00
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
OFFSET_NR, OFFSET_ARCH = 0, 4

GUARD_FAILED = 125          # the launcher's exit status when it could not install the filter
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "guard.py")

CDEF = """
int prctl(int option, ...);
long syscall(long number, ...);
struct sock_filter { unsigned short code; unsigned char jt; unsigned char jf; unsigned int k; };
struct sock_fprog { unsigned short len; struct sock_filter *filter; };
"""


class GuardError(OSError):
    pass


def deny_action(kill: bool = False, errno: int | None = None) -> int:
    """What the filter returns for a guarded call."""
    import errno as E
    if kill:
        return SECCOMP_RET_KILL_PROCESS
    return SECCOMP_RET_ERRNO | ((E.EPERM if errno is None else errno) & SECCOMP_RET_DATA)


def program(deny: int | None = None, tables=TABLES) -> bytes:
    """The filter as an array of struct sock_filter (native byte order)."""
    deny = deny_action() if deny is None else deny
    # ("jeq", k, label): jump to label if A == k, else go on; ("label", name) marks a place
    items: list[tuple] = [(BPF_LD_W_ABS, OFFSET_ARCH)]
    items += [("jeq", arch, name) for name, arch, _, _ in tables]
    items.append((BPF_RET_K, SECCOMP_RET_KILL_PROCESS))          # an ABI not in the tables
    for name, _, mask, numbers in tables:
        items += [("label", name), (BPF_LD_W_ABS, OFFSET_NR)]
        if mask is not None:
            items.append((BPF_ALU_AND_K, mask))
        items += [("jeq", nr, "deny") for nr in numbers]
        items.append((BPF_RET_K, SECCOMP_RET_ALLOW))
    items += [("label", "deny"), (BPF_RET_K, deny)]
    return _assemble(items)


def _assemble(items: list[tuple]) -> bytes:
    where, pc = {}, 0
    for item in items:
        if item[0] == "label":
            where[item[1]] = pc
        else:
            pc += 1
    out, pc = [], 0
    for item in items:
        if item[0] == "label":
            continue
        if item[0] == "jeq":
            jump = where[item[2]] - (pc + 1)
            if not 0 <= jump <= 255:
                raise ValueError(f"jump to {item[2]} out of range: {jump}")
            out.append(struct.pack("=HBBI", BPF_JMP_JEQ_K, jump, 0, item[1]))
        else:
            out.append(struct.pack("=HBBI", item[0], 0, 0, item[1]))
        pc += 1
    return b"".join(out)


def _ffi():
    """cffi in ABI mode, out of line: tests/_guard_ffi.py holds CDEF already parsed (no
    pycparser at start-up); `python3 tests/guard.py --emit-ffi` regenerates it."""
    try:
        from ._guard_ffi import ffi
    except ImportError:              # run as a script: tests/ is sys.path[0]
        from _guard_ffi import ffi
    return ffi, ffi.dlopen(None)


def ffi_builder():
    from cffi import FFI
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("tests._guard_ffi", None)
    return ffi


def status() -> dict[str, str]:
    """This process's Seccomp, Seccomp_filters, NoNewPrivs and Threads lines of /proc/self/status."""
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)
                if k in ("Seccomp", "Seccomp_filters", "NoNewPrivs", "Threads")}


def install(kill: bool = False, errno: int | None = None, tables=TABLES) -> None:
    """Install the filter in this process (and so in all it starts from now on).

    Refused on a host with an ABI the tables lack, and in a process with more than
    one thread (the filter would cover the calling thread only): raises GuardError.
    """
    machine = os.uname().machine
    if machine not in KNOWN_HOSTS:
        raise GuardError(f"the guard knows no syscall numbers for {machine}: add its ABIs to TABLES")
    before = status()
    if before.get("Threads", "1") != "1":
        raise GuardError(f"{before['Threads']} threads: install the guard before starting any thread")
    ffi, libc = _ffi()
    code = program(deny_action(kill, errno), tables)
    count = len(code) // 8
    filters = ffi.new("struct sock_filter[]", count)
    ffi.memmove(filters, code, len(code))
    fprog = ffi.new("struct sock_fprog *", {"len": count, "filter": filters})
    ulong = lambda v: ffi.cast("unsigned long", v)     # noqa: E731  (prctl is variadic)
    ffi.errno = 0
    if libc.prctl(PR_SET_NO_NEW_PRIVS, ulong(1), ulong(0), ulong(0), ulong(0)) != 0:
        raise GuardError(ffi.errno, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ffi.errno)}")
    if libc.prctl(PR_SET_SECCOMP, ulong(SECCOMP_MODE_FILTER), fprog, ulong(0), ulong(0)) != 0:
        raise GuardError(ffi.errno, f"prctl(PR_SET_SECCOMP): {os.strerror(ffi.errno)}")
    after = status()
    if after.get("Seccomp") != "2" or int(after.get("Seccomp_filters", 1)) <= int(before.get("Seccomp_filters", 0)):
        raise GuardError(f"the filter is not in place: {after}")


def guarded(cmd: list[str], kill: bool = False, errno: str | None = None) -> list[str]:
    """``cmd`` behind the launcher: it runs with the filter installed, or not at all."""
    opts = ["--kill"] if kill else ["--errno", errno] if errno else []
    return [sys.executable, SCRIPT, *opts, "--", *map(str, cmd)]


def attempted(returncode: int) -> bool:
    """Whether a ``--kill`` guard killed the process (directly, or as a shell reports it)."""
    import signal
    return returncode in (-signal.SIGSYS, 128 + signal.SIGSYS)


def main(argv: list[str]) -> int:
    usage = "usage: guard.py [--kill | --errno NAME] -- CMD ARGS...  |  guard.py --emit-ffi"
    if argv == ["--emit-ffi"]:
        ffi_builder().emit_python_code(os.path.join(HERE, "_guard_ffi.py"))
        return 0
    kill, errno = False, None
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--kill":
            kill = True
        elif opt == "--errno" and argv:
            import errno as E
            name = argv.pop(0)
            errno = getattr(E, name, None)
            if not isinstance(errno, int):
                print(f"guard: no errno named {name}", file=sys.stderr)
                return 2
        else:
            print(usage, file=sys.stderr)
            return 2
    cmd = argv[1:]
    if not cmd:
        print(usage, file=sys.stderr)
        return 2
    try:
        install(kill=kill, errno=errno)
    except (OSError, ImportError) as e:
        print(f"guard: cannot install the seccomp filter, so {cmd[0]} was not run: {e}", file=sys.stderr)
        return GUARD_FAILED
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"guard: {cmd[0]}: {e.strerror}", file=sys.stderr)
        return 127 if isinstance(e, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
