"""crashkernel= evaluated as the kernel does: a table whose every expected value was
worked out by hand from the rule it cites (the kernel's documentation, quoted below; where
the documentation is silent, the kernel's own source comment or log line, read in
kernel/crash_reserve.c and lib/cmdline.c), never from kexec_py's code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kexec_py.kdump.crashkernel import CrashkernelError, evaluate, evaluate_cmdline, memparse, parse_size

K, M, G, T, P, E = (1 << s for s in (10, 20, 30, 40, 50, 60))

# Documentation/admin-guide/kernel-parameters.txt, the crashkernel= entries:
KP_PLAIN = ("crashkernel=size[KMG][@offset[KMG]] ... This parameter reserves the physical memory region "
            "[offset, offset + size] for that kernel image. If '@offset' is omitted, then a suitable offset "
            "is selected automatically.")
KP_RANGES = ("crashkernel=range1:size1[,range2:size2,...][@offset] ... The syntax of range is start-[end] "
             "where start and end are both a memory unit (amount[KMG]).")
KP_HIGH = "crashkernel=size[KMG],high [KNL, X86-64, ARM64, RISCV, LoongArch] ... It will be ignored if crashkernel=X is specified."
KP_LOW = ("crashkernel=size[KMG],low ... Kernel would try to allocate default size of memory below 4G "
          "automatically. The default size is platform dependent. --> x86: max(swiotlb_size_or_default() + 8MiB, "
          "256MiB) --> arm64: 128MiB ... 0: to disable low allocation.")
# Documentation/admin-guide/kdump/kdump.rst, "crashkernel syntax":
KD_RANGES = ("crashkernel=512M-2G:64M,2G-:128M This would mean: 1) if the RAM is smaller than 512M, then don't "
             "reserve anything 2) if the RAM size is between 512M and 2G (exclusive), then reserve 64M 3) if the "
             "RAM size is larger than 2G, then reserve 128M")
KD_LOW = "Kernel will allocate at least 256M memory below 4G automatically if crashkernel=Y,low is not specified."
# Documentation/admin-guide/kernel-parameters.rst, "Metric suffixes", and lib/cmdline.c memparse():
SUFFIXES = ("The [KMG] suffix ... 'K', 'M', and 'G' letters represent the binary multipliers ... 2^10, 2^20, "
            "and 2^30 bytes; memparse: 'The number stored at @ptr is potentially suffixed with K, M, G, T, P, E.'")
C_NUMBER = "memparse reads the number with simple_strtoull(ptr, &endptr, 0): base 0, C's 0x hex and 0 octal"
# kernel/crash_reserve.c, parse_crashkernel_mem(): "rounding up the total size to 128M"
ROUND_128M = "Firmware sometimes reserves some memory regions ... rounding up the total size to 128M"
# kernel/crash_reserve.c, the end of parse_crashkernel(): a size of 0, or one not below system RAM, is -EINVAL
NOT_BELOW_RAM = "if (!*crash_size) -> -EINVAL; if (*crash_size >= system_ram) -> -EINVAL"


# (value, RAM, arch, expected (size, @offset, low) , rule) -------------------------------------
RESERVES = [
    ("384M", 1536 * M, "x86_64", (384 * M, 0, 0), KP_PLAIN),
    ("256M@16M", 1536 * M, "x86_64", (256 * M, 16 * M, 0), KP_PLAIN),
    ("64M@0x1000000", 1536 * M, "x86_64", (64 * M, 16 * M, 0), KP_PLAIN + C_NUMBER),
    ("0x10000000", 1536 * M, "x86_64", (256 * M, 0, 0), C_NUMBER),
    ("010M", 1536 * M, "x86_64", (8 * M, 0, 0), C_NUMBER),               # 010 is octal 8
    ("1k", 1536 * M, "x86_64", (1 * K, 0, 0), SUFFIXES),                  # either case
    ("1G", 1536 * M, "x86_64", (1 * G, 0, 0), SUFFIXES),
    ("1T", 4 * T, "x86_64", (1 * T, 0, 0), SUFFIXES),
    ("1P", 2 * P, "x86_64", (1 * P, 0, 0), SUFFIXES),
    ("1e", 2 * E, "x86_64", (1 * E, 0, 0), SUFFIXES),
    ("512M-2G:64M,2G-:128M", 512 * M, "x86_64", (64 * M, 0, 0), KD_RANGES),     # start inclusive
    ("512M-2G:64M,2G-:128M", 1536 * M, "x86_64", (64 * M, 0, 0), KD_RANGES),
    ("512M-2G:64M,2G-:128M", 2 * G, "x86_64", (128 * M, 0, 0), KD_RANGES),      # 2G is past "2G (exclusive)"
    ("512M-2G:64M,2G-:128M", 16 * G, "x86_64", (128 * M, 0, 0), KD_RANGES),     # open end
    ("512M-2G:64M,2G-:128M", 2047 * M, "x86_64", (128 * M, 0, 0), KD_RANGES + ROUND_128M),   # 2047M -> 2048M
    ("512M-2G:64M,2G-:128M", 500 * M, "x86_64", (64 * M, 0, 0), KD_RANGES + ROUND_128M),     # 500M -> 512M
    ("512M-2G:64M,2G-:128M@16M", 4 * G, "x86_64", (128 * M, 16 * M, 0), KP_RANGES),
    ("1G-4G:256M,4G-:512M", 6 * G, "x86_64", (512 * M, 0, 0), KP_RANGES),
    ("1G-4G:256M,4G-:512M", 1535 * M + 507 * K, "x86_64", (256 * M, 0, 0), KP_RANGES + ROUND_128M),  # a QEMU 1536M guest
    ("256M,high", 6 * G, "x86_64", (256 * M, 0, 256 * M), KP_HIGH + KP_LOW + KD_LOW),   # max(64M+8M, 256M)
    ("256M,high", 6 * G, "arm64", (256 * M, 0, 128 * M), KP_HIGH + KP_LOW),
    ("256M,high 128M,low", 6 * G, "x86_64", (256 * M, 0, 128 * M), KP_LOW),
    ("256M,high 0,low", 6 * G, "x86_64", (256 * M, 0, 0), KP_LOW),
    ("384M 256M,high", 6 * G, "x86_64", (384 * M, 0, 0), KP_HIGH),               # the plain one wins
    ("256M,high 384M", 6 * G, "x86_64", (384 * M, 0, 0), KP_HIGH),               # in any order
]


@pytest.mark.parametrize("value, ram, arch, expected, rule", RESERVES, ids=[f"{r[0]}@{r[1]}-{r[2]}" for r in RESERVES])
def test_reserves(value, ram, arch, expected, rule):
    found = evaluate(value, ram, arch)
    assert (found.size, found.base, found.low) == expected, rule


# (value, RAM, arch, the kernel's complaint or our words for a silent -EINVAL, rule) -------------
REFUSED = [
    ("abc", G, "x86_64", "crashkernel: memory value expected", KP_PLAIN),
    ("", G, "x86_64", "crashkernel: memory value expected", KP_PLAIN),
    ("256Mx", G, "x86_64", "crashkernel: unrecognized char: x", KP_PLAIN),
    ("08M", G, "x86_64", "crashkernel: unrecognized char: 8", C_NUMBER),          # 8 is no octal digit
    ("256M,higher", 6 * G, "x86_64", "crashkernel: unrecognized char: ,", KP_HIGH),  # not a known suffix: plain
    ("1G:64M", 4 * G, "x86_64", "crashkernel: '-' expected", KP_RANGES),
    ("1G-2G;64M,2G-:1G", 4 * G, "x86_64", "crashkernel: ':' expected", KP_RANGES),
    ("2G-1G:64M", 4 * G, "x86_64", "crashkernel: end <= start", KP_RANGES),
    ("1G-1G:64M", 4 * G, "x86_64", "crashkernel: end <= start", KP_RANGES),
    ("1G-:", 4 * G, "x86_64", "crashkernel: Memory value expected", KP_RANGES),
    ("-2G:64M", 4 * G, "x86_64", "crashkernel: Memory value expected", KP_RANGES),
    ("512M-:2G", 1536 * M, "x86_64", "crashkernel: invalid size", KP_RANGES + ROUND_128M),
    ("1G-:256M@", 4 * G, "x86_64", "crashkernel: Memory value expected after '@'", KP_RANGES),
    ("512M-2G:64M,2G-:128M", 256 * M, "x86_64", "no range matches 256M", KD_RANGES),   # "don't reserve anything"
    ("0", G, "x86_64", "the size is 0", NOT_BELOW_RAM),
    ("2G", 1536 * M, "x86_64", "is not below the RAM", NOT_BELOW_RAM),
    ("0,high", 6 * G, "x86_64", "a size of 0", NOT_BELOW_RAM),
    ("256M,high", 6 * G, "ppc64le", "reads no crashkernel=,high", KP_HIGH),       # not a listed arch
    ("256M,high 12x,low", 6 * G, "x86_64", "crashkernel: unrecognized char: x", KP_LOW),
]


@pytest.mark.parametrize("value, ram, arch, says, rule", REFUSED, ids=[f"{r[0] or 'empty'}@{r[1]}-{r[2]}" for r in REFUSED])
def test_refused(value, ram, arch, says, rule):
    with pytest.raises(CrashkernelError) as e:
        evaluate(value, ram, arch)
    assert says in e.value.message, rule


def test_last_plain_one_on_the_command_line_wins():
    # kernel/crash_reserve.c get_last_crashkernel(): "find crashkernel and use the last one if there are more"
    assert evaluate_cmdline("ro crashkernel=128M quiet crashkernel=256M", 4 * G).size == 256 * M
    assert evaluate_cmdline("crashkernel=256M,high crashkernel=512M,high crashkernel=64M,low", 8 * G).size == 512 * M


def test_no_crashkernel_reserves_nothing():
    with pytest.raises(CrashkernelError, match="no crashkernel="):
        evaluate_cmdline("ro quiet", 4 * G)


@pytest.mark.parametrize("text, value, used", [("384M", 384 * M, 4), ("0x10", 16, 4), ("012", 10, 3), ("0x", 0, 1),
                                               ("K", 0, 1), ("18446744073709551616", 0, 20)])
def test_memparse(text, value, used):
    # C's strtoull with base 0 then an optional unit; 64-bit arithmetic wraps (2**64 -> 0)
    assert memparse(text) == (value, used)


def test_parse_size_wants_all_of_it():
    assert parse_size("6G", what="--ram") == 6 * G
    with pytest.raises(Exception, match="not a size"):
        parse_size("6 GB", what="--ram")


def _kdump_py(*args):
    return subprocess.run([sys.executable, "-m", "kexec_py.kdump", *args], capture_output=True, text=True, timeout=60)


def test_command_line():
    ok = _kdump_py("crashkernel", "1G-4G:256M,4G-:512M", "--ram", "6G", "--arch", "x86_64")
    assert ok.returncode == 0 and "reserves 512M (0x20000000 bytes)" in ok.stdout, ok
    bad = _kdump_py("crashkernel", "1G-4G:256M,4G-", "--ram", "6G", "--arch", "x86_64")
    assert bad.returncode == 1 and "crashkernel: Memory value expected" in bad.stderr and not bad.stdout, bad
    js = _kdump_py("crashkernel", "256M,high", "--ram", "6G", "--arch", "arm64", "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["low"] == 128 * M, js
