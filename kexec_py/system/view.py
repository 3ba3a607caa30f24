"""A read-only view of the running system, rooted at a path.

Everything kexec_py learns about the machine it runs on goes through one
``SystemView``: /proc/iomem, /proc/cmdline, /sys/kernel/..., /sys/firmware/...,
the headers of /proc/kcore. Tests root it at a captured fixture directory; the
CLI roots it at "/".
"""

from __future__ import annotations

import os
import re
from functools import cached_property

from kexec_py.errors import SnapshotError
from kexec_py.plan.ranges import Range
from kexec_py.record import REQUIRED, Record

KCORE_HEADER_BYTES = 64 * 1024
FDT_PATH = "/sys/firmware/fdt"
DEVICE_TREE_DIRS = ("/proc/device-tree", "/sys/firmware/devicetree/base")


class CrashNote(Record):
    _defaults = dict(cpu=REQUIRED, addr=REQUIRED, size=REQUIRED)
    __slots__ = tuple(_defaults)


class TypedRange(Record):
    _defaults = dict(
        range=REQUIRED,     # Range
        type=REQUIRED,      # the kernel's own words: "System RAM", "ACPI Tables", "reserved", ...
    )
    __slots__ = tuple(_defaults)


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,5,7-8' -> [0, 1, 2, 3, 5, 7, 8]"""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


class SystemView:
    # The root is kept as a string and files are opened by os.path joins: pathlib (3 ms to
    # import here, with urllib.parse) is imported only by what needs a Path (issue 13).
    def __init__(self, root: str | Path = "/"):
        self._root = os.fspath(root)

    @property
    def root(self) -> Path:
        from pathlib import Path
        return Path(self._root)

    def is_live(self) -> bool:
        """Whether this view is of the running system (root "/"), not of a snapshot."""
        return os.path.normpath(self._root) == "/"

    def __repr__(self) -> str:
        return f"SystemView({str(self.root)!r})"

    # -- raw access ---------------------------------------------------------
    def _file(self, path: str) -> str:
        return os.path.join(self._root, path.lstrip("/"))

    def path(self, path: str) -> Path:
        from pathlib import Path
        return Path(self._file(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._file(path))

    def read_bytes(self, path: str, *, limit: int | None = None) -> bytes:
        try:
            with open(self._file(path), "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except FileNotFoundError:
            raise SnapshotError(f"{path} does not exist",
                                _MISSING_HINTS.get(path, "is the kernel built with kexec and crash-dump support?"))
        except PermissionError:
            raise SnapshotError(f"cannot read {path}: permission denied", "run as root")
        except OSError as e:
            raise SnapshotError(f"cannot read {path}: {e.strerror}")

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", "replace")

    def read_optional(self, path: str) -> str | None:
        return self.read_text(path) if self.exists(path) else None

    def read_number(self, path: str, base: int = 10, text: str | None = None) -> int:
        """The number a /proc or /sys file holds (``text``: its contents, when already read)."""
        text = (self.read_text(path) if text is None else text).strip()
        try:
            return int(text, base)
        except ValueError:
            raise SnapshotError(f"{path}: expected a {'hex ' if base == 16 else ''}number, found {text[:40]!r}",
                                "check that /proc and /sys are the kernel's own, mounted and read as root") from None

    # -- parsed facts -------------------------------------------------------
    @cached_property
    def iomem(self) -> IoMem:
        from kexec_py.system.iomem import parse_iomem
        return parse_iomem(self.read_text("/proc/iomem"))

    @cached_property
    def cmdline(self) -> str:
        return self.read_text("/proc/cmdline").split("\n")[0].split("\r")[0].strip()

    def crash_regions(self) -> list[Range]:
        """Every "Crash kernel" range, sorted and without duplicates (crashkernel=,high gives two).
        ppc64 lists none in /proc/iomem: its reservation is only in the live device tree's
        /chosen (``linux,crashkernel-base`` and ``-size``), which is read when iomem has none."""
        found = sorted(set(self.iomem.named("Crash kernel")))
        return found or self._device_tree_crash_region()

    def _device_tree_crash_region(self) -> list[Range]:
        for top in DEVICE_TREE_DIRS:
            base_path, size_path = f"{top}/chosen/linux,crashkernel-base", f"{top}/chosen/linux,crashkernel-size"
            if self.exists(base_path) and self.exists(size_path):
                base, size = self.read_bytes(base_path), self.read_bytes(size_path)
                if len(base) not in (4, 8) or len(size) not in (4, 8):
                    raise SnapshotError(f"{top}/chosen/linux,crashkernel-base/-size: expected 4- or 8-byte "
                                        f"numbers, found {len(base)} and {len(size)} bytes")
                start, length = int.from_bytes(base, "big"), int.from_bytes(size, "big")
                return [Range.sized(start, length)] if length else []
        return []

    def flag(self, path: str) -> bool:
        return self.read_text(path).strip() not in ("", "0")

    def kexec_loaded(self) -> bool:
        return self.flag("/sys/kernel/kexec_loaded")

    def kexec_crash_loaded(self) -> bool:
        return self.flag("/sys/kernel/kexec_crash_loaded")

    def kexec_crash_size(self) -> int:
        path = "/sys/kernel/kexec_crash_size"
        text = self.read_text(path)
        return self.read_number(path, text=text) if text.strip() else 0

    def possible_cpus(self) -> list[int]:
        text = self.read_optional("/sys/devices/system/cpu/possible")
        if text is None:
            return sorted(int(p.name[3:]) for p in self.path("/sys/devices/system/cpu").glob("cpu[0-9]*")
                          if p.name[3:].isdigit())
        try:
            return parse_cpu_list(text)
        except ValueError:
            raise SnapshotError(f"/sys/devices/system/cpu/possible: cannot parse {text.strip()[:40]!r} "
                                "as a CPU list") from None

    def crash_notes(self) -> list[CrashNote]:
        """The per-CPU crash note buffers, for every possible CPU that has one."""
        notes = []
        for cpu in self.possible_cpus():
            base = f"/sys/devices/system/cpu/cpu{cpu}"
            if not self.exists(f"{base}/crash_notes"):
                continue
            addr = self.read_number(f"{base}/crash_notes", 16)
            size_text = self.read_optional(f"{base}/crash_notes_size")
            size = self.read_number(f"{base}/crash_notes_size", text=size_text) if size_text else 1024
            notes.append(CrashNote(cpu, addr, size))
        return notes

    def core_notes(self) -> list[tuple[int, int]]:
        """What an ELF core header's PT_NOTEs point at, as (address, size): each CPU's crash
        notes, then VMCOREINFO when the kernel has it. No crash notes at all: SnapshotError."""
        notes = [(n.addr, n.size) for n in self.crash_notes()]
        if not notes:
            raise SnapshotError("no /sys/devices/system/cpu/cpu*/crash_notes files",
                                "the kernel needs CONFIG_CRASH_DUMP (and /sys mounted)")
        vmcoreinfo = self.vmcoreinfo()
        return notes + [vmcoreinfo] if vmcoreinfo else notes

    def vmcoreinfo(self) -> tuple[int, int] | None:
        text = self.read_optional("/sys/kernel/vmcoreinfo")
        if text is None:
            return None
        fields = text.split()
        try:
            return int(fields[0], 16), int(fields[1], 16)
        except (IndexError, ValueError):
            raise SnapshotError(f"/sys/kernel/vmcoreinfo: cannot parse {text.strip()[:60]!r}")

    def firmware_memmap(self) -> list[TypedRange] | None:
        """/sys/firmware/memmap (the boot-time e820 on x86), or None when absent."""
        top = self.path("/sys/firmware/memmap")
        if not top.is_dir():
            return None
        out = []
        for entry in sorted(top.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0):
            rel = f"/sys/firmware/memmap/{entry.name}"
            start = self.read_number(f"{rel}/start", 16)
            end = self.read_number(f"{rel}/end", 16)
            if end < start:
                raise SnapshotError(f"{rel}: the range ends ({end:#x}) before it starts ({start:#x})")
            out.append(TypedRange(Range.from_inclusive(start, end), self.read_text(f"{rel}/type").strip()))
        return sorted(out, key=lambda t: t.range.start)

    def boot_params(self) -> bytes | None:
        path = "/sys/kernel/boot_params/data"
        return self.read_bytes(path) if self.exists(path) else None

    def kcore_headers(self) -> bytes | None:
        """The ELF headers of /proc/kcore (never the whole file)."""
        path = "/proc/kcore"
        return self.read_bytes(path, limit=KCORE_HEADER_BYTES) if self.exists(path) else None

    @cached_property
    def page_size(self) -> int:
        """The running kernel's page size: the auxiliary vector's AT_PAGESZ
        (/proc/self/auxv), else PAGESIZE= of the VMCOREINFO note in /proc/kcore.
        Every segment of a kexec_load must be aligned to it."""
        if self.exists("/proc/self/auxv"):
            size = auxv_page_size(self.read_bytes("/proc/self/auxv"))
            if size is None:
                raise SnapshotError("/proc/self/auxv: no AT_PAGESZ entry with a power-of-two page size in it")
        else:
            from kexec_py.system.kcore import parse_kcore
            size = _int_or_none(parse_kcore(self.kcore_headers()).vmcoreinfo.get("PAGESIZE"))
            if size is None:
                raise SnapshotError("cannot tell the page size: no /proc/self/auxv, and no PAGESIZE in "
                                    "/proc/kcore's VMCOREINFO", "is /proc mounted?")
        if size < 4096 or size & (size - 1):
            raise SnapshotError(f"the page size {size} (from /proc) is not a power of two of at least 4096")
        return size

    def crash_elfcorehdr_size(self) -> int:
        """/sys/kernel/crash_elfcorehdr_size: the room a kernel that updates a loaded crash
        kernel's ELF core header on hotplug wants for it; 0 when missing or unusable."""
        text = (self.read_optional("/sys/kernel/crash_elfcorehdr_size") or "").strip()
        return int(text) if text.isdigit() else 0

    def device_tree(self) -> DeviceTree:
        """The running machine's device tree, a new ``DeviceTree`` on every call (callers edit it).

        /sys/firmware/fdt when the kernel shows it: the tree it was booted with, header
        and reservation block included (arm64). Else the live tree, built from the
        directory form (``live_device_tree``; on ppc64 /sys/firmware/fdt is the tree the
        early boot code flattened, without what the kernel added to /chosen since, such as
        the crash reservation: a ppc64 planner wants ``live_device_tree``), whose
        ``boot_cpuid_phys`` is None and ``reservations`` empty: see
        ``kexec_py.system.devicetree_dir`` for why and what the arch must add.
        """
        from kexec_py.plan.devicetree import parse_dtb

        if self.exists(FDT_PATH):
            return parse_dtb(self.read_bytes(FDT_PATH), what=FDT_PATH)
        if not any(self.path(d).is_dir() for d in DEVICE_TREE_DIRS):
            raise SnapshotError(f"the running kernel shows no device tree ({FDT_PATH}, "
                                f"{' and '.join(DEVICE_TREE_DIRS)} are absent)",
                                "pass one with --dtb, or boot with a device tree (an ACPI-only machine has none)")
        return self.live_device_tree()

    def live_device_tree(self) -> DeviceTree:
        """The kernel's live tree, from /proc/device-tree (else /sys/firmware/devicetree/base)."""
        from kexec_py.system.devicetree_dir import read_device_tree_dir

        top = next((d for d in DEVICE_TREE_DIRS if self.path(d).is_dir()), DEVICE_TREE_DIRS[0])
        return read_device_tree_dir(self, top)

    def efi_number(self, name: str) -> int | None:
        """A hex address in /sys/firmware/efi/NAME (fw_vendor, runtime, config_table);
        None when the file is absent."""
        path = f"/sys/firmware/efi/{name}"
        text = self.read_optional(path)
        return None if text is None else self.read_number(path, 16, text=text)

    def efi_platform_size(self) -> int | None:
        """/sys/firmware/efi/fw_platform_size: 64 or 32 (the firmware's word size); None when absent."""
        path = "/sys/firmware/efi/fw_platform_size"
        text = self.read_optional(path)
        return None if text is None else self.read_number(path, text=text)

    def efi_runtime_map(self) -> list[dict[str, int]] | None:
        """The EFI memory descriptors the running kernel mapped for runtime services
        (/sys/firmware/efi/runtime-map/N/{type,phys_addr,virt_addr,num_pages,attribute},
        in the order of N); None when the directory is absent (no EFI, or booted with
        efi=noruntime or noefi, or a kernel without CONFIG_EFI_RUNTIME_MAP)."""
        top = self.path("/sys/firmware/efi/runtime-map")
        if not top.is_dir():
            return None
        entries = sorted((p.name for p in top.iterdir() if p.name.isdigit()), key=int)
        out = []
        for n in entries:
            rel = f"/sys/firmware/efi/runtime-map/{n}"
            out.append({k: self.read_number(f"{rel}/{k}", 16) for k in EFI_RUNTIME_MAP_FIELDS})
        return out

    # -- what kdump-py doctor and crashkernel --estimate read (all read-only) -----------------
    def file_size(self, path: str) -> int | None:
        """The size of a regular file (symbolic links followed), None when there is none."""
        try:
            p = self.path(self.resolve(path))
            return p.stat().st_size if p.is_file() else None
        except SnapshotError:
            return None
        except OSError:
            return None

    def resolve(self, path: str) -> str:
        """``path`` with its symbolic links followed inside the root (an absolute link
        target is taken relative to the root, not to this machine's /)."""
        import os
        import posixpath
        current = posixpath.normpath("/" + path.lstrip("/"))
        for _ in range(40):
            p = self.path(current)
            if not p.is_symlink():
                return current
            target = os.readlink(p)
            current = posixpath.normpath(target if target.startswith("/")
                                         else posixpath.join(posixpath.dirname(current), target))
        raise SnapshotError(f"{path}: too many levels of symbolic links")

    def sysctl(self, name: str) -> str | None:
        """/proc/sys/NAME (``kernel/panic_on_oops``), stripped; None when absent or unreadable."""
        try:
            text = self.read_optional(f"/proc/sys/{name}")
        except SnapshotError:
            return None
        return None if text is None else text.strip()

    def kernel_release(self) -> str | None:
        """The running kernel's release (``uname -r``): /proc/sys/kernel/osrelease, else the
        OSRELEASE of /proc/kcore's VMCOREINFO; on "/" also the uname system call."""
        release = self.sysctl("kernel/osrelease")
        if not release and self.exists("/proc/kcore"):
            from kexec_py.system.kcore import parse_kcore
            try:
                release = parse_kcore(self.kcore_headers()).vmcoreinfo.get("OSRELEASE")
            except SnapshotError:
                release = None
        if not release and self.is_live():
            import os
            release = os.uname().release
        return release or None

    def machine(self) -> str | None:
        """The running kernel's architecture, as kexec_py's registry names it (x86_64,
        i386, arm64, ppc64le, ...): the ELF machine of /proc/kcore, else (on "/") uname."""
        head = self.read_bytes("/proc/kcore", limit=20) if self.exists("/proc/kcore") else b""
        if len(head) >= 20 and head[:4] == b"\x7fELF":
            machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
            name = {62: "x86_64", 3: "i386", 183: "arm64", 40: "arm", 22: "s390x", 243: "riscv64",
                    258: "loongarch64"}.get(machine)
            if machine == 21:
                name = "ppc64le" if head[5] == 1 else "ppc64"
            if name:
                return name
        if self.is_live():
            import os
            machine = os.uname().machine         # (the system layer names it itself: it may not import arch)
            return {"aarch64": "arm64", "i486": "i386", "i586": "i386", "i686": "i386"}.get(machine, machine)
        return None

    def kernel_config(self, release: str | None) -> tuple[str, dict[str, str]] | None:
        """The running kernel's build configuration: (where it was read, {"CONFIG_X": "y"}),
        from /boot/config-RELEASE, else /proc/config.gz; None when neither exists. An
        option that is "not set" is absent from the dict."""
        found = self._config_bytes(release)
        if found is None:
            return None
        path, data = found
        options = {}
        for line in data.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("CONFIG_"):
                options[key] = value.strip().strip('"')
        return path, options

    def lacks_kernel_option(self, name: str) -> bool:
        """Whether the running kernel's configuration is there and leaves ``name`` unset
        ("# CONFIG_X is not set", or no line at all). False when no configuration is found:
        then nothing is known. One search of the file, not a parse: the -a load asks this
        on its way to its first system call."""
        found = self._config_bytes(self.kernel_release())
        if found is None:
            return False
        data = b"\n" + found[1]
        key = b"\n" + name.encode() + b"="
        at = data.find(key)
        if at < 0:
            return True
        value = data[at + len(key):data.find(b"\n", at + 1)].strip()
        return value in (b"", b"n")

    def _config_bytes(self, release: str | None) -> tuple[str, bytes] | None:
        candidates = ([f"/boot/config-{release}"] if release else []) + ["/proc/config.gz"]
        for path in candidates:
            if not self.exists(path):
                continue
            data = self.read_bytes(path)
            if path.endswith(".gz"):
                import gzip
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as e:
                    raise SnapshotError(f"{path}: not a gzip file ({e})") from None
            return path, data
        return None

    def ram_size(self) -> int | None:
        """The RAM the kernel manages, as it counts it when it reads crashkernel= (crash
        regions included): every "System RAM" range of /proc/iomem, merged."""
        from kexec_py.plan.ranges import merge
        try:
            return sum(r.size for r in merge(self.iomem.containing_name("System RAM"))) or None
        except SnapshotError:
            return None

    def efi_systab(self) -> dict[str, int]:
        text = self.read_optional("/sys/firmware/efi/systab") or ""
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and re.fullmatch(r"\s*0x[0-9a-fA-F]+\s*", value):
                out[key.strip()] = int(value, 16)
        return out


EFI_RUNTIME_MAP_FIELDS = ("type", "phys_addr", "virt_addr", "num_pages", "attribute")

AT_NULL, AT_PAGESZ = 0, 6


def auxv_page_size(data: bytes) -> int | None:
    """AT_PAGESZ from an auxiliary vector of unknown word size and byte order: the one
    reading in which the vector ends with AT_NULL and gives a power-of-two page size.
    (Two words an entry, so struct: this runs on every load, where construct's import
    is not otherwise needed.)"""
    import struct
    for fmt in ("<QQ", ">QQ", "<II", ">II"):
        step = struct.calcsize(fmt)
        usable = len(data) - len(data) % step
        found = None
        for kind, value in struct.iter_unpack(fmt, data[:usable]):
            if kind == AT_NULL:
                if found and not found & (found - 1):
                    return found
                break
            if kind == AT_PAGESZ:
                found = value
            elif kind > 0xFFFF:
                break                   # not a plausible entry type: wrong word size or byte order
    return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


_MISSING_HINTS = {
    "/proc/iomem": "is /proc mounted?",
    "/proc/cmdline": "is /proc mounted?",
    "/sys/kernel/kexec_crash_loaded": "the kernel needs CONFIG_CRASH_DUMP; is /sys mounted?",
    "/sys/kernel/kexec_loaded": "the kernel needs CONFIG_KEXEC; is /sys mounted?",
    "/sys/kernel/kexec_crash_size": "the kernel needs CONFIG_CRASH_DUMP; is /sys mounted?",
}
