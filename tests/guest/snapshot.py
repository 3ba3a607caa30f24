"""Copy a booted guest's /proc and /sys view out into tests/fixtures/systems/.

The loader's unit tests read these files instead of the host's, so they can
check the load plan for a known machine without booting anything.
"""

from __future__ import annotations

import shutil
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
)

# The guest step: kpy_put (see init.sh) sends each file over the console.
SNAPSHOT_STEP = f"""\
# Keep kernel messages off the console while files go through it.
echo 1 >/proc/sys/kernel/printk
for f in {' '.join(SINGLE_FILES)}; do kpy_put "$f"; done
for f in /sys/devices/system/cpu/cpu[0-9]*/crash_notes \\
         /sys/devices/system/cpu/cpu[0-9]*/crash_notes_size; do kpy_put "$f"; done
for d in /sys/firmware/memmap/*; do
    for k in start end type; do kpy_put "$d/$k"; done
done
if [ -d /sys/firmware/efi ]; then
    find /sys/firmware/efi -type f ! -path '*/efivars/*' | while read -r f; do kpy_put "$f"; done
fi
kpy_put /proc/kcore /proc/kcore 65536
[ -e /sys/firmware/fdt ] && kpy_put /sys/firmware/fdt
grep -E ' (_text|_stext|_end|__init_begin)$' /proc/kallsyms >/tmp/kallsyms
kpy_put /proc/kallsyms /tmp/kallsyms
"""


class SnapshotError(RuntimeError):
    pass


def capture(name: str, *, smp: int = harness.DEFAULT_SMP, mem: int = harness.DEFAULT_MEM,
            append: str = "", arch: str = "x86_64", dest_root: Path = FIXTURES) -> Path:
    """Boot a guest, collect its files, and write them under dest_root/name."""
    scenario = harness.Scenario(f"snapshot-{name}", [("snapshot", SNAPSHOT_STEP)])
    result = harness.run(scenario, arch, smp=smp, mem=mem, append=append)
    if result.markers.get("RC-snapshot") != "0" or result.bad_files or not result.files:
        raise SnapshotError(f"snapshot failed (garbled: {result.bad_files})\n{result.explain()}")
    dest = dest_root / name
    shutil.rmtree(dest, ignore_errors=True)
    for guest_path, data in sorted(result.files.items()):
        target = dest / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    absent = [m.value for m in result.events if m.key in ("FILE-ABSENT", "FILE-ERROR")]
    print(f"{name}: {len(result.files)} files in {dest}; absent or unreadable: {absent or 'none'}")
    return dest
