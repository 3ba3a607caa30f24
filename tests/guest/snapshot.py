"""Copy a booted guest's /proc and /sys view out into tests/fixtures/systems/.

The loader's unit tests read these files instead of the host's, so they can
check the load plan for a known machine without booting anything.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from . import harness

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "systems"

SINGLE_FILES = (
    "/proc/iomem", "/proc/cmdline", "/proc/mounts",
    "/sys/kernel/kexec_loaded", "/sys/kernel/kexec_crash_loaded",
    "/sys/kernel/kexec_crash_size", "/sys/kernel/vmcoreinfo",
    "/sys/kernel/boot_params/data", "/sys/kernel/boot_params/version",
    "/sys/devices/system/cpu/possible", "/sys/devices/system/cpu/present",
    "/sys/devices/system/cpu/online",
    "/proc/sys/kernel/kexec_load_disabled", "/sys/kernel/security/lockdown",
    "/sys/kernel/crash_elfcorehdr_size",
    "/proc/self/auxv",          # AT_PAGESZ: the page size (of the reading process, which is the kernel's)
)

# The list of device-tree node directories (a host-side helper file, not a guest path).
DT_DIRS = "/kexec-py-capture/device-tree-dirs"
# The guest's kernel log, written as NAME/dmesg.txt: it says where the kernel reserved
# the crash memory ("Reserving ...MB of memory at ...MB for crashkernel"), which ppc64
# shows nowhere else but in the device tree.
DMESG = "/kexec-py-capture/dmesg"
DMESG_FILE = "dmesg.txt"

# The guest step: kpy_put (see init.sh) sends each file over the console.
SNAPSHOT_STEP = f"""\
# Keep kernel messages off the console while files go through it.
echo 1 >/proc/sys/kernel/printk
for f in {' '.join(SINGLE_FILES)}; do kpy_put "$f"; done
for f in /sys/devices/system/cpu/cpu[0-9]*/crash_notes \\
         /sys/devices/system/cpu/cpu[0-9]*/crash_notes_size; do kpy_put "$f"; done
# Memory blocks (hotplug): the block size and each block's state (s390x drops offline ones).
for f in /sys/devices/system/memory/block_size_bytes /sys/devices/system/memory/memory[0-9]*/state; do
    [ -e "$f" ] && kpy_put "$f"
done
for d in /sys/firmware/memmap/*; do
    for k in start end type; do kpy_put "$d/$k"; done
done
if [ -d /sys/firmware/efi ]; then
    find /sys/firmware/efi -type f ! -path '*/efivars/*' | while read -r f; do kpy_put "$f"; done
fi
kpy_put /proc/kcore /proc/kcore 65536
[ -e /sys/firmware/fdt ] && kpy_put /sys/firmware/fdt
# The unflattened tree, one file per property (raw bytes, often binary, some empty),
# one directory per node; hidden names included. Sent as /proc/device-tree/...
# (on the guest a symlink to /sys/firmware/devicetree/base). The directory list
# goes first so that a node without files would still be recreated.
if [ -d /proc/device-tree/ ]; then
    (cd /proc/device-tree/ && find . -type d) >/tmp/dt-dirs
    kpy_put {DT_DIRS} /tmp/dt-dirs
    (cd /proc/device-tree/ && find . -type f) | while read -r f; do
        kpy_put "/proc/device-tree/${{f#./}}" "/proc/device-tree/$f"
    done
fi
grep -E ' (_text|_stext|_end|__init_begin)$' /proc/kallsyms >/tmp/kallsyms
kpy_put /proc/kallsyms /tmp/kallsyms
dmesg >/tmp/dmesg
kpy_put {DMESG} /tmp/dmesg
"""


class SnapshotError(RuntimeError):
    pass


# Each captured fixture records how it was captured, so that one command
# (scripts/capture-snapshot --all) can capture it again.
MANIFEST = "capture.json"


@dataclass(frozen=True)
class Params:
    """The guest a fixture was captured from: QEMU's -smp and -m (MiB), the first
    kernel's crashkernel= and any extra command line (e.g. a second crashkernel=), and the
    firmware it booted under ("bios", or "ovmf" for UEFI)."""
    arch: str = "x86_64"
    smp: int = harness.DEFAULT_SMP
    mem: int = harness.DEFAULT_MEM
    crashkernel: str = harness.DEFAULT_CRASHKERNEL
    append: str = ""
    firmware: str = "bios"
    # whether the guest's kernel reserves crash memory: Debian's s390x kernel, built without
    # CONFIG_CRASH_DUMP, reserves none whatever crashkernel= says
    crash_memory: bool = True

    @classmethod
    def load(cls, fixture: Path) -> "Params":
        path = fixture / MANIFEST
        try:
            data = json.loads(path.read_text())
            params = cls(**data)
        except FileNotFoundError:
            raise SnapshotError(f"{path} does not exist: give the capture parameters on the command line")
        except (ValueError, TypeError) as err:
            raise SnapshotError(f"{path}: not a capture manifest ({err}); fix or delete it")
        if params.arch not in harness.QEMU_MACHINE:
            raise SnapshotError(f"{path}: unknown arch {params.arch!r}; known: {sorted(harness.QEMU_MACHINE)}")
        if params.firmware not in harness.FIRMWARES:
            raise SnapshotError(f"{path}: unknown firmware {params.firmware!r}; known: {harness.FIRMWARES}")
        return params

    def dump(self, fixture: Path) -> None:
        (fixture / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")


def captured_fixtures(root: Path = FIXTURES) -> list[str]:
    """Names of the fixtures under ``root`` that have a capture manifest."""
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))


def crash_memory_reserved(files: dict[str, bytes]) -> bool:
    """Whether the guest's files show a crash reservation: a "Crash kernel" range in
    /proc/iomem, or (ppc64, whose iomem has none) a non-zero
    /chosen/linux,crashkernel-size in the device tree."""
    if b"Crash kernel" in files.get("/proc/iomem", b""):
        return True
    size = files.get("/proc/device-tree/chosen/linux,crashkernel-size", b"")
    return int.from_bytes(size, "big") > 0


def _device_tree_dirs(dir_list: str, files: dict[str, bytes]) -> list[str]:
    """The node directories the guest listed (``find . -type d`` output), relative to
    /proc/device-tree. Refuses a capture where one holds no file: git keeps no empty
    directory, so that node would be lost. (The kernel gives every node a ``name`` file.)"""
    holders = {Path(p).parent for p in files}
    dirs = []
    for line in dir_list.splitlines():
        if not line.strip():
            continue
        rel = line.strip().removeprefix(".").strip("/")
        guest = Path("/proc/device-tree") / rel
        if not any(h == guest or guest in h.parents for h in holders):
            raise SnapshotError(f"{guest} holds no file: git would not keep it")
        dirs.append(rel)
    return dirs


def capture(name: str, params: Params = Params(), *, dest_root: Path = FIXTURES) -> Path:
    """Boot a guest, collect its files, and write them (and the manifest) under dest_root/name."""
    scenario = harness.Scenario(f"snapshot-{name}", [("snapshot", SNAPSHOT_STEP)])
    result = harness.run(scenario, params.arch, smp=params.smp, mem=params.mem,
                         crashkernel=params.crashkernel, append=params.append, firmware=params.firmware)
    if result.markers.get("RC-snapshot") != "0" or result.bad_files or not result.files:
        raise SnapshotError(f"snapshot failed (garbled: {result.bad_files})\n{result.explain()}")
    if params.crash_memory and not crash_memory_reserved(result.files):
        raise SnapshotError(f"{name}: the guest reserved no crash memory (no 'Crash kernel' in /proc/iomem, "
                            f"no /chosen/linux,crashkernel-size in the device tree) "
                            f"with crashkernel={params.crashkernel} {params.append}; log: {result.log_path}")
    files = dict(result.files)
    dmesg = files.pop(DMESG, None)
    dt_list = files.pop(DT_DIRS, None)
    dt_dirs = _device_tree_dirs(dt_list.decode(), files) if dt_list is not None else []
    dest = dest_root / name
    shutil.rmtree(dest, ignore_errors=True)
    for guest_path, data in sorted(files.items()):
        target = dest / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for rel in dt_dirs:
        (dest / "proc/device-tree" / rel).mkdir(parents=True, exist_ok=True)
    if dmesg is not None:
        (dest / DMESG_FILE).write_bytes(dmesg)
    params.dump(dest)
    absent = [m.value for m in result.events if m.key in ("FILE-ABSENT", "FILE-ERROR")]
    print(f"{name}: {len(files)} files in {dest}; absent or unreadable: {absent or 'none'}")
    return dest
