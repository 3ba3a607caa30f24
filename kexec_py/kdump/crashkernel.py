"""``crashkernel=`` as the Linux kernel reads it, for a given amount of RAM.

The rules, as the kernel documents and implements them (kernel/crash_reserve.c, formerly
kernel/crash_core.c; Documentation/admin-guide/kernel-parameters.txt, "crashkernel=";
Documentation/admin-guide/kdump/kdump.rst, "crashkernel syntax"):

* Numbers are read like the kernel's ``memparse``: a C integer (``0x`` hex, a leading
  ``0`` octal, else decimal), then optionally one of K, M, G, T, P, E (either case), each
  a further factor of 1024 (kernel-parameters.rst, "Metric suffixes"). Arithmetic is
  64-bit and wraps.
* Of several ``crashkernel=`` on one command line the kernel takes the last one of each
  kind; a plain one (``size[@offset]`` or the range list) is one whose word does not end
  in ``,high``, ``,low`` or ``,cma``.
* ``size[@offset]``: anything after the size other than ``@`` or the end of the word is
  refused ("unrecognized char"); the offset after ``@`` is read without a check.
* ``start-[end]:size[,start-[end]:size...][@offset]`` (a ``:`` before the first space):
  the RAM is first rounded up to a multiple of 128 MiB; ``start`` is inclusive, ``end``
  exclusive (kdump.rst: "between 512M and 2G (exclusive)"), an omitted end is unbounded;
  the first matching range wins and the rest of the list is not read; every size read
  on the way must be below the rounded RAM; no matching range reserves nothing.
* ``size,high`` (and ``size,low``) count only when there is no plain one (kernel-parameters:
  "It will be ignored if crashkernel=X is specified") and only on the architectures with
  the generic reservation (x86_64, arm64, riscv64, loongarch64); without ``,low`` the
  arch's default low size is reserved below 4 GiB as well (x86: 256 MiB; arm64, riscv,
  loongarch: 128 MiB); ``crashkernel=0,low`` reserves none.
* Whatever the syntax, a size of 0, or one not below the RAM, reserves nothing.

This module is the one place that knows these rules; ``kdump-py crashkernel`` and
``kdump-py doctor`` both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.errors import KexecError

MASK64 = (1 << 64) - 1
MiB = 1 << 20
GiB = 1 << 30
NAME = "crashkernel="
SUFFIXES = (",high", ",low", ",cma")
UNITS = "KMGTPE"
RAM_ROUNDING = 128 * MiB

# the architectures whose kernels read crashkernel=,high and ,low (generic reservation),
# with the low size they reserve when ,low is not given (kernel-parameters.txt,
# "crashkernel=size[KMG],low": x86 max(swiotlb default 64 MiB + 8 MiB, 256 MiB); arm64,
# riscv, loongarch 128 MiB)
DEFAULT_LOW = {"x86_64": 256 * MiB, "arm64": 128 * MiB, "riscv64": 128 * MiB, "loongarch64": 128 * MiB}


class CrashkernelError(KexecError):
    """The kernel refuses the value: it reserves nothing (``kernel_says``: its log line)."""

    def __init__(self, message: str, hint: str = "", *, kernel_says: str = "", value: str = ""):
        super().__init__(message, hint)
        self.kernel_says = kernel_says
        self.value = value


@dataclass(frozen=True)
class Reservation:
    size: int                       # bytes; the main (or ,high) region
    base: int = 0                   # the @offset; 0: the kernel picks
    high: bool = False              # crashkernel=,high: placed above 4 GiB when possible
    low: int = 0                    # bytes reserved below 4 GiB besides (,high only)
    low_default: bool = False       # ``low`` is the arch default (no ,low given)
    cma: int = 0                    # crashkernel=,cma (only read with the generic reservation)
    syntax: str = "plain"           # plain | ranges | high
    matched: str = ""               # ranges: the entry that matched, e.g. "4G-:512M"
    ram_rounded: int = 0            # ranges: the RAM figure the ranges were matched against
    word: str = ""                  # the crashkernel=... word that decided it

    @property
    def total(self) -> int:
        return self.size + self.low


def memparse(text: str, pos: int = 0) -> tuple[int, int]:
    """(value, end): the number at ``text[pos:]`` with its optional unit; end == pos when
    nothing was read."""
    i, base = pos, 10
    if text.startswith("0", i):
        if text[i + 1:i + 2] in ("x", "X") and text[i + 2:i + 3] and text[i + 2] in "0123456789abcdefABCDEF":
            base, i = 16, i + 2
        else:
            base = 8
    digits = "0123456789abcdef"[:base]
    value = 0
    while i < len(text) and text[i].lower() in digits:
        value = (value * base + int(text[i], 16)) & MASK64
        i += 1
    if i < len(text) and text[i].upper() in UNITS:
        value = (value << (10 * (UNITS.index(text[i].upper()) + 1))) & MASK64
        i += 1
    return value, i


def parse_size(text: str, *, what: str) -> int:
    """A size the user gives (``--ram 6G``), read like memparse, the whole text."""
    value, end = memparse(text.strip())
    if end == 0 or end != len(text.strip()):
        raise KexecError(f"{what}: {text!r} is not a size", "write a number with an optional K, M, G, T, P or E, "
                         "e.g. 6G or 0x180000000")
    return value


def _words_with_name(cmdline: str) -> list[tuple[int, str]]:
    """Every place ``crashkernel=`` occurs (as a substring, as the kernel searches),
    with its word: the text from there to the next space."""
    found, at = [], cmdline.find(NAME)
    while at >= 0:
        end = cmdline.find(" ", at)
        found.append((at, cmdline[at:end if end >= 0 else len(cmdline)]))
        at = cmdline.find(NAME, at + 1)
    return found


def _last(cmdline: str, suffix: str | None) -> str | None:
    """The value (text after ``crashkernel=``, to the end of the command line) of the last
    plain (suffix None) or suffixed occurrence."""
    chosen = None
    for at, word in _words_with_name(cmdline):
        if (suffix is None and not word.endswith(SUFFIXES)) or (suffix is not None and word.endswith(suffix)):
            chosen = cmdline[at + len(NAME):]
    return chosen


def _refuse(value: str, says: str, where: int | None = None) -> CrashkernelError:
    word = "crashkernel=" + value.split(" ")[0]
    at = f" at character {where + 1} of {value.split(' ')[0]!r}" if where is not None else ""
    return CrashkernelError(f"{word}: the kernel refuses it: \"{says}\"{at}, and reserves no memory",
                            "see kernel-parameters.txt, crashkernel=", kernel_says=says, value=value)


def _char(text: str, i: int) -> str:
    return text[i] if i < len(text) else ""


def _simple(value: str) -> Reservation:
    size, i = memparse(value)
    if i == 0:
        raise _refuse(value, "crashkernel: memory value expected", 0)
    base = 0
    if _char(value, i) == "@":
        base, i = memparse(value, i + 1)
    elif _char(value, i) not in ("", " "):
        raise _refuse(value, f"crashkernel: unrecognized char: {value[i]}", i)
    return Reservation(size=size, base=base, word=NAME + value.split(" ")[0])


def _ranges(value: str, ram: int) -> Reservation:
    total = -(-ram // RAM_ROUNDING) * RAM_ROUNDING
    i, size, matched = 0, 0, ""
    while True:
        entry_at = i
        start, j = memparse(value, i)
        if j == i:
            raise _refuse(value, "crashkernel: Memory value expected", i)
        i = j
        if _char(value, i) != "-":
            raise _refuse(value, "crashkernel: '-' expected", i)
        i += 1
        end = MASK64
        if _char(value, i) != ":":
            end, j = memparse(value, i)
            if j == i:
                raise _refuse(value, "crashkernel: Memory value expected", i)
            i = j
            if end <= start:
                raise _refuse(value, "crashkernel: end <= start", i)
        if _char(value, i) != ":":
            raise _refuse(value, "crashkernel: ':' expected", i)
        i += 1
        entry_size, j = memparse(value, i)
        if j == i:
            raise _refuse(value, "crashkernel: Memory value expected", i)
        i = j
        if entry_size >= total:
            raise _refuse(value, "crashkernel: invalid size", i)
        if start <= total < end:
            size, matched = entry_size, value[entry_at:i]
            break
        separator = _char(value, i)
        i += 1
        if separator != ",":
            break
    base = 0
    if size:
        while _char(value, i) not in ("", " ", "@"):
            i += 1
        if _char(value, i) == "@":
            base, j = memparse(value, i + 1)
            if j == i + 1:
                raise _refuse(value, "crashkernel: Memory value expected after '@'", i + 1)
    return Reservation(size=size, base=base, syntax="ranges", matched=matched, ram_rounded=total,
                       word=NAME + value.split(" ")[0])


def _suffixed(value: str, suffix: str) -> int:
    size, i = memparse(value)
    if i == 0:
        raise _refuse(value, "crashkernel: memory value expected", 0)
    if not value.startswith(suffix, i):
        raise _refuse(value, f"crashkernel: unrecognized char: {_char(value, i)}", i)
    i += len(suffix)
    if _char(value, i) not in ("", " "):
        raise _refuse(value, f"crashkernel: unrecognized char: {value[i]}", i)
    return size


def evaluate_cmdline(cmdline: str, ram: int, arch: str = "x86_64") -> Reservation:
    """What the kernel reserves for this command line on a machine with ``ram`` bytes of
    RAM (the kernel's figure: all memory it manages, crash regions included).
    Raises CrashkernelError when it reserves nothing, saying why."""
    generic = arch in DEFAULT_LOW
    plain = _last(cmdline, None)
    if plain is not None:
        colon, space = plain.find(":"), plain.find(" ")
        found = _ranges(plain, ram) if colon >= 0 and (space < 0 or colon < space) else _simple(plain)
    elif generic and (high := _last(cmdline, ",high")) is not None:
        size = _suffixed(high, ",high")
        if not size:
            raise CrashkernelError(f"{NAME}{high.split(' ')[0]}: a size of 0: no memory is reserved",
                                   "give a size above 0")
        low_value = _last(cmdline, ",low")
        low = DEFAULT_LOW[arch] if low_value is None else _suffixed(low_value, ",low")
        found = Reservation(size=size, high=True, low=low, low_default=low_value is None, syntax="high",
                            word=NAME + high.split(" ")[0])
    else:
        others = [w for _, w in _words_with_name(cmdline)]
        if others:
            raise CrashkernelError(f"{' '.join(others)}: this kernel ({arch}) reads no crashkernel=,high or ,low, "
                                   "and there is no plain crashkernel=: no memory is reserved",
                                   "use crashkernel=SIZE")
        raise CrashkernelError("no crashkernel= on the command line: no memory is reserved for a capture kernel",
                               "boot with crashkernel=SIZE (see kdump-py crashkernel --estimate)")
    if generic and (cma_value := _last(cmdline, ",cma")) is not None:
        try:
            found = Reservation(**{**found.__dict__, "cma": _suffixed(cma_value, ",cma")})
        except CrashkernelError:
            pass                        # the kernel ignores a bad ,cma
    if not found.size:
        what = (f"no range matches {_size(found.ram_rounded)} of RAM (rounded up to a multiple of 128M)"
                if found.syntax == "ranges" else "the size is 0")
        raise CrashkernelError(f"{found.word}: {what}: no memory is reserved",
                               "add a range that covers this machine's RAM" if found.syntax == "ranges" else "")
    if found.size >= ram:
        raise CrashkernelError(f"{found.word}: {_size(found.size)} is not below the RAM ({_size(ram)}): "
                               "no memory is reserved", "reserve less than the machine has")
    return found


def evaluate(value: str, ram: int, arch: str = "x86_64") -> Reservation:
    """One ``crashkernel=`` value (what follows ``crashkernel=``); ``,high`` with its
    ``,low`` may be given as one value separated by a space: ``"256M,high 128M,low"``."""
    words = value.split()
    cmdline = " ".join(w if w.startswith(NAME) else NAME + w for w in words) if words else NAME
    return evaluate_cmdline(cmdline, ram, arch)


def _size(n: int) -> str:
    for unit, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def human(n: int) -> str:
    """A size as the kernel parameters write it when exact (512M, 6G), else about so many MiB."""
    exact = _size(n)
    return exact if n < 1 << 20 or exact[-1] not in "K0123456789" else f"{n / (1 << 20):.1f}M"


def describe(found: Reservation, ram: int, arch: str) -> list[str]:
    """The reservation in words, one line each."""
    lines = [f"{found.word} on {arch} with {human(ram)} ({ram:#x}) of RAM:"]
    if found.syntax == "ranges":
        lines.append(f"  the range entry {found.matched!r} matches {human(found.ram_rounded)} "
                     "(RAM rounded up to a multiple of 128M; start inclusive, end exclusive)")
    where = (f"at {found.base:#x} exactly (@offset)" if found.base else
             "above 4G where possible" if found.high else
             "placed by the kernel" + (", below 4G first, else above 4G with the default low part"
                                       if arch in DEFAULT_LOW else ""))
    lines.append(f"  reserves {human(found.size)} ({found.size:#x} bytes), {where}")
    if found.high:
        lines.append(f"  and {human(found.low)} ({found.low:#x} bytes) below 4G"
                     + (" (this arch's default: no crashkernel=,low)" if found.low_default else " (crashkernel=,low)"))
    if found.cma:
        lines.append(f"  and {human(found.cma)} of CMA (crashkernel=,cma)")
    return lines
