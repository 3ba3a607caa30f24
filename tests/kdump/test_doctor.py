"""kdump-py doctor on the captured snapshots and on small synthetic roots, one for each
way a check can warn or fail.

The captured snapshots come from guests booted with crashkernel= but with no capture
kernel loaded (``sys/kernel/kexec_crash_loaded`` is 0 in every one: scripts/capture-snapshot
boots without a kexec load), so a crash there would not dump and doctor must call each of
them not ready. The "ready" root is the x86_64-qemu-2cpu snapshot completed the way the
guest kdump test (tests/test_guest_kdump_config.py) sets a guest up: Debian's kernel,
its config and a kdump initrd for that release, /etc/default/kdump-tools with USE_KDUMP=1,
a loaded capture kernel, panic_on_oops set by kdump-config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kexec_py.kdump.doctor import FAIL, NOT_READY, PASS, READY, READY_WITH_WARNINGS, WARN, run, verdict
from kexec_py.kdump.estimate import LUKS2_MAGIC, estimate
from kexec_py.system.view import SystemView
from tests.conftest import SYSTEMS

CAPTURED = sorted(p for p in SYSTEMS.iterdir() if (p / "capture.json").exists())
M = 1 << 20


def statuses(root) -> dict[str, tuple[str, str]]:
    return {c.check: (c.status, c.message) for c in run(SystemView(root))}


@pytest.mark.parametrize("snapshot", CAPTURED, ids=[p.name for p in CAPTURED])
def test_captured_snapshots_are_not_ready(snapshot):
    assert (snapshot / "sys/kernel/kexec_crash_loaded").read_text().strip() == "0"
    checks = run(SystemView(snapshot))
    code, summary = verdict(checks)
    assert code == NOT_READY and summary.startswith("not ready"), summary
    found = {c.check: c for c in checks}
    assert found["crash-loaded"].status == FAIL
    # what the snapshots do have is seen as such: crashkernel= and its ranges (none where the
    # kernel reserves no crash memory: Debian's s390x kernel has no CONFIG_CRASH_DUMP)
    reserves = json.loads((snapshot / "capture.json").read_text()).get("crash_memory", True)
    assert found["crashkernel"].status == PASS, found["crashkernel"]
    assert found["crash-region"].status == (PASS if reserves else FAIL), found["crash-region"]
    assert all(c.hint for c in checks if c.status != PASS)


@pytest.fixture(scope="module")
def debian_x86_64():
    from tests.guest.fetch import fetch
    return fetch("x86_64")


def write(root: Path, path: str, text: str | bytes) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)


@pytest.fixture
def ready(tmp_path, debian_x86_64) -> Path:
    root = tmp_path / "root"
    shutil.copytree(SYSTEMS / "x86_64-qemu-2cpu", root)
    release = debian_x86_64.kernel_version
    write(root, "/proc/sys/kernel/osrelease", release + "\n")
    shutil.copy(debian_x86_64.kernel, root / f"boot/vmlinuz-{release}" if (root / "boot").is_dir()
                else _mkdir(root / "boot") / f"vmlinuz-{release}")
    shutil.copy(debian_x86_64.kernel.parent / f"config-{release}", root / f"boot/config-{release}")
    write(root, f"/var/lib/kdump/initrd.img-{release}", b"\x1f\x8b" + bytes(4 * M))
    write(root, "/etc/default/kdump-tools", "# kdump-tools\nUSE_KDUMP=1\nKDUMP_COREDIR=\"/var/crash\"\n")
    write(root, "/sys/kernel/kexec_crash_loaded", "1\n")
    write(root, "/proc/sys/kernel/sysrq", "438\n")
    write(root, "/proc/sys/kernel/panic_on_oops", "1\n")
    return root


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_ready_root_is_ready(ready):
    checks = run(SystemView(ready))
    assert verdict(checks) == (READY, "ready"), [c for c in checks if c.status != PASS]
    names = {c.check for c in checks}
    assert {"config-kexec", "crash-dump", "proc-vmcore", "relocatable", "kallsyms", "config-signatures",
            "config-lockdown", "crashkernel", "crash-region", "crash-size", "crash-loaded", "kexec-permitted",
            "sysrq", "panic-on-oops", "capture-cmdline", "capture-kernel", "capture-initrd", "kdump-service",
            "vmcoreinfo"} <= names


def _edit_config(root: Path, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> None:
    path = next((root / "boot").glob("config-*"))
    lines = [l for l in path.read_text().splitlines() if l.split("=")[0] not in drop]
    path.write_text("\n".join(lines + list(add)) + "\n")


def _iomem_without(root: Path, name: str, keep_first: bool = False) -> None:
    path = root / "proc/iomem"
    seen = []
    lines = []
    for line in path.read_text().splitlines():
        if line.strip().endswith(": " + name):
            seen.append(line)
            if not (keep_first and len(seen) == 1):
                continue
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


# (what to change in the ready root, the check, its status, words its message must hold)
PATHS = [
    ("no config", lambda r: [p.unlink() for p in (r / "boot").glob("config-*")], "kernel-config", WARN, "not checked"),
    ("no CRASH_DUMP", lambda r: _edit_config(r, drop=("CONFIG_CRASH_DUMP",)), "crash-dump", FAIL, "CONFIG_CRASH_DUMP"),
    ("no PROC_VMCORE", lambda r: _edit_config(r, drop=("CONFIG_PROC_VMCORE",)), "proc-vmcore", FAIL, "/proc/vmcore"),
    ("no KEXEC at all", lambda r: _edit_config(r, drop=("CONFIG_KEXEC", "CONFIG_KEXEC_FILE")), "config-kexec", FAIL,
     "neither"),
    ("no KEXEC_FILE", lambda r: _edit_config(r, drop=("CONFIG_KEXEC_FILE",)), "config-kexec-file", WARN, "253"),
    ("no RELOCATABLE", lambda r: _edit_config(r, drop=("CONFIG_RELOCATABLE",)), "relocatable", WARN, "reservation"),
    ("no KALLSYMS", lambda r: _edit_config(r, drop=("CONFIG_KALLSYMS",)), "kallsyms", WARN, "symbol"),
    ("SIG_FORCE", lambda r: _edit_config(r, add=("CONFIG_KEXEC_SIG_FORCE=y",)), "config-signatures", WARN, "signed"),
    ("forced lockdown", lambda r: _edit_config(r, add=("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY=y",)),
     "config-lockdown", WARN, "always locked down"),
    ("no crashkernel=", lambda r: write(r, "/proc/cmdline", "console=ttyS0,115200 panic=1\n"), "crashkernel", FAIL,
     "no crashkernel="),
    ("bad crashkernel=", lambda r: write(r, "/proc/cmdline", "crashkernel=1G-:384Mx@ panic=1\n"), "crashkernel", FAIL,
     "Memory value expected after '@'"),
    ("no reservation", lambda r: _iomem_without(r, "Crash kernel"), "crash-region", FAIL, "reserved no memory"),
    ("reservation differs", lambda r: write(r, "/proc/cmdline", "crashkernel=512M\n"), "crash-region", WARN,
     "asks for 512M"),
    ("shrunk to nothing", lambda r: write(r, "/sys/kernel/kexec_crash_size", "0\n"), "crash-size", FAIL,
     "given back"),
    ("shrunk too far", lambda r: write(r, "/sys/kernel/kexec_crash_size", str(96 * M) + "\n"), "crash-size", WARN,
     "96M reserved"),
    ("shrunk below kernel", lambda r: write(r, "/sys/kernel/kexec_crash_size", str(32 * M) + "\n"), "crash-size",
     FAIL, "not even"),
    ("not loaded", lambda r: write(r, "/sys/kernel/kexec_crash_loaded", "0\n"), "crash-loaded", FAIL, "is 0"),
    ("kexec disabled, loaded", lambda r: write(r, "/proc/sys/kernel/kexec_load_disabled", "1\n"), "kexec-permitted",
     WARN, "cannot be reloaded"),
    ("kexec disabled, not loaded", lambda r: (write(r, "/proc/sys/kernel/kexec_load_disabled", "1\n"),
                                              write(r, "/sys/kernel/kexec_crash_loaded", "0\n")),
     "kexec-permitted", FAIL, "refused until reboot"),
    ("locked down, -c", lambda r: (write(r, "/sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
                                   write(r, "/etc/default/kdump-tools", "USE_KDUMP=1\nKDUMP_KEXEC_ARGS=\"-c\"\n")),
     "kexec-permitted", FAIL, "kexec_load (-c) is refused"),
    ("locked down, no KEXEC_FILE", lambda r: (write(r, "/sys/kernel/security/lockdown", "none integrity "
                                                                                           "[confidentiality]\n"),
                                              _edit_config(r, drop=("CONFIG_KEXEC_FILE",))),
     "kexec-permitted", FAIL, "no syscall is left"),
    ("sysrq off", lambda r: write(r, "/proc/sys/kernel/sysrq", "0\n"), "sysrq", WARN, "is 0"),
    ("panic_on_oops off", lambda r: write(r, "/proc/sys/kernel/panic_on_oops", "0\n"), "panic-on-oops", WARN,
     "not dumped"),
    ("capture cmdline lacks", lambda r: write(r, "/etc/default/kdump-tools",
                                              "USE_KDUMP=1\nKDUMP_CMDLINE_APPEND=\"nr_cpus=1 quiet\"\n"),
     "capture-cmdline", WARN, "lacks irqpoll reset_devices"),
    ("capture cmdline maxcpus", lambda r: write(r, "/etc/default/kdump-tools",
                                                "USE_KDUMP=1\nKDUMP_CMDLINE_APPEND='maxcpus=1 irqpoll'\n"),
     "capture-cmdline", WARN, "lacks reset_devices:"),
    ("KDUMP_CMDLINE has them", lambda r: write(r, "/etc/default/kdump-tools", "USE_KDUMP=1\nKDUMP_CMDLINE_APPEND=quiet\n"
                                               "KDUMP_CMDLINE='root=/dev/vda irqpoll maxcpus=1 reset_devices'\n"),
     "capture-cmdline", PASS, "after KDUMP_CMDLINE: root=/dev/vda irqpoll maxcpus=1 reset_devices quiet"),
    ("KDUMP_KERNEL missing", lambda r: (write(r, "/etc/default/kdump-tools", "USE_KDUMP=1\nKDUMP_KERNEL=/srv/vmlinuz\n"),
                                       [p.unlink() for p in (r / "boot").glob("vmlinuz-*")]),
     "capture-kernel", FAIL, "/srv/vmlinuz"),
    ("no capture kernel", lambda r: [p.unlink() for p in (r / "boot").glob("vmlinuz-*")], "capture-kernel", FAIL,
     "no capture kernel"),
    ("only the first kernel's initrd", lambda r: (
        (r / "var/lib/kdump").rename(r / "boot-initrds"),
        [p.rename(_mkdir(r / "boot") / p.name.replace("initrd.img", "initrd.img")) for p in (r / "boot-initrds").iterdir()]),
     "capture-initrd", WARN, "first kernel's"),
    ("no initrd", lambda r: shutil.rmtree(r / "var/lib/kdump"), "capture-initrd", FAIL, "no initrd"),
    ("USE_KDUMP=0", lambda r: write(r, "/etc/default/kdump-tools", "USE_KDUMP=0\n"), "kdump-service", WARN,
     "USE_KDUMP=0"),
    ("no service", lambda r: (r / "etc/default/kdump-tools").unlink(), "kdump-service", WARN, "no kdump service"),
    ("no vmcoreinfo", lambda r: (r / "sys/kernel/vmcoreinfo").unlink(), "vmcoreinfo", FAIL, "VMCOREINFO"),
]


@pytest.mark.parametrize("change, check, status, words", [p[1:] for p in PATHS], ids=[p[0] for p in PATHS])
def test_each_way_to_go_wrong(ready, change, check, status, words):
    change(ready)
    found = statuses(ready)
    assert found[check][0] == status and words in found[check][1], found[check]
    code, _ = verdict(run(SystemView(ready)))
    assert code == {FAIL: NOT_READY, WARN: READY_WITH_WARNINGS, PASS: READY}[status]


def test_high_without_low_region(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SYSTEMS / "x86_64-qemu-6g-high", root)
    assert statuses(root)["crash-region"][0] == PASS
    text = (root / "proc/iomem").read_text().splitlines()
    low = next(i for i, l in enumerate(text) if l.strip().endswith(": Crash kernel") and int(l.split("-")[0], 16) < 1 << 32)
    (root / "proc/iomem").write_text("\n".join(text[:low] + text[low + 1:]) + "\n")
    status, message = statuses(root)["crash-region"]
    assert status == FAIL and "128M below" in message, message


def test_ppc64_reservation_from_the_device_tree():
    found = statuses(SYSTEMS / "ppc64le-qemu-2cpu")
    assert found["crash-region"] == (PASS, "Crash kernel: 0x20000000-0x37ffffff (384M)")


def test_fedora_setup(ready):
    (ready / "etc/default/kdump-tools").unlink()
    release = (ready / "proc/sys/kernel/osrelease").read_text().strip()
    write(ready, "/etc/sysconfig/kdump", 'KDUMP_COMMANDLINE_APPEND="irqpoll nr_cpus=1 reset_devices '
                                         'cgroup_disable=memory"\nKEXEC_ARGS="-s"\n')
    write(ready, "/etc/kdump.conf", "path /var/crash\n")
    (ready / f"var/lib/kdump/initrd.img-{release}").rename(ready / f"boot/initramfs-{release}kdump.img")
    found = statuses(ready)
    assert found["kdump-service"][0] == WARN and "not enabled" in found["kdump-service"][1]
    _mkdir(ready / "etc/systemd/system/multi-user.target.wants")
    (ready / "etc/systemd/system/multi-user.target.wants/kdump.service").symlink_to("/usr/lib/systemd/system/kdump.service")
    found = statuses(ready)
    assert found["kdump-service"][0] == PASS
    assert found["capture-initrd"][0] == PASS and "kdump.img" in found["capture-initrd"][1]
    assert found["capture-cmdline"][0] == PASS
    assert "kexec_file_load (-s)" in found["kexec-permitted"][1]


def _luks2_header(memory_kib: list[int]) -> bytes:
    # LUKS2 on-disk format: "LUKS\xba\xbe", version 2 (be16), header size (be64, binary header +
    # JSON area), ...; the JSON area starts at 4096; each keyslot's kdf names its memory in KiB
    meta = {"keyslots": {str(i): {"type": "luks2", "kdf": {"type": "argon2id", "time": 4, "memory": m, "cpus": 4}}
                         for i, m in enumerate(memory_kib)}, "segments": {}, "digests": {}, "config": {}}
    head = LUKS2_MAGIC + (2).to_bytes(2, "big") + (16384).to_bytes(8, "big")
    return head.ljust(4096, b"\0") + json.dumps(meta).encode().ljust(16384 - 4096, b"\0")


def test_estimate_terms(ready):
    sys_ = SystemView(ready)
    release = sys_.kernel_release()
    kernel = f"/boot/vmlinuz-{release}"
    # the bzImage's init_size: 4 bytes at 0x260 of the file (Documentation/arch/x86/boot.rst, protocol 2.10+)
    init_size = int.from_bytes((ready / kernel.lstrip("/")).read_bytes()[0x260:0x264], "little")
    est = estimate(sys_, kernel=kernel, initrd=f"/var/lib/kdump/initrd.img-{release}",
                   append="reset_devices nr_cpus=1 irqpoll", reservation=384 * M)
    terms = {t.name: t.size for t in est.terms}
    ram = sys_.ram_size()
    assert terms == {"kernel": init_size, "initrd": 3 * (4 * M + 2), "bitmap": ram // 4096 // 4, "cpus": 1 * M,
                     "runtime": 64 * M, "memmap": 384 * M // 4096 * 64}
    assert est.total % (16 * M) == 0 and est.total - 16 * M < sum(terms.values()) <= est.total
    # without nr_cpus=1 every possible CPU (0-1 in this snapshot) counts
    est = estimate(sys_, kernel=kernel, initrd=None, append="irqpoll", reservation=384 * M)
    assert {t.name: t.size for t in est.terms}["cpus"] == 2 * M


def test_estimate_counts_luks(ready):
    write(ready, "/etc/crypttab", "# <target> <source> <key> <options>\ncryptroot UUID=1234-abcd none luks\n"
                                  "cryptswap /dev/vdb2 /dev/urandom swap\n")
    write(ready, "/dev/disk/by-uuid/1234-abcd", _luks2_header([1048576, 262144]))
    sys_ = SystemView(ready)
    est = estimate(sys_, kernel=None, initrd=None, append="nr_cpus=1", reservation=256 * M)
    terms = {t.name: t.size for t in est.terms}
    # /dev/vdb2 has no header in the root: counted as cryptsetup's 1 GiB; the costliest wins
    assert terms["luks"] == 1024 * M and any("vdb2" in n for n in est.notes)
    write(ready, "/dev/vdb2", _luks2_header([524288]))
    terms = {t.name: t.size for t in estimate(sys_, kernel=None, initrd=None, append="nr_cpus=1",
                                              reservation=256 * M).terms}
    assert terms["luks"] == 1048576 * 1024


def _kdump_py(*args):
    return subprocess.run([sys.executable, "-m", "kexec_py.kdump", *args], capture_output=True, text=True, timeout=120)


def test_command_exit_codes_and_json(ready):
    done = _kdump_py("doctor", "--root", str(ready), "--json")
    assert done.returncode == READY, done.stderr
    checks = json.loads(done.stdout)
    assert isinstance(checks, list) and all(set(c) == {"check", "status", "message", "hint"} for c in checks)
    assert {c["status"] for c in checks} == {PASS}
    write(ready, "/proc/sys/kernel/sysrq", "0\n")
    done = _kdump_py("doctor", "--root", str(ready))
    assert done.returncode == READY_WITH_WARNINGS and done.stdout.splitlines()[-1] == "ready, with 1 warning"
    done = _kdump_py("doctor", "--root", str(SYSTEMS / "x86_64-qemu-2cpu"))
    assert done.returncode == NOT_READY and "FAIL  crash-loaded" in done.stdout
    done = _kdump_py("doctor", "--root", str(ready / "no-such-dir"))
    assert done.returncode == 1 and "no such directory" in done.stderr and not done.stdout, done
    done = _kdump_py("crashkernel", "--estimate", "--root", str(ready))
    assert done.returncode == 0 and "recommended: crashkernel=" in done.stdout and "reserved now: 384M (enough)" \
        in done.stdout, done.stdout


def test_32bit_arm_is_movable_by_auto_zreladdr(ready, monkeypatch):
    """32-bit arm has no CONFIG_RELOCATABLE: a zImage whose decompressor finds the RAM base
    itself (AUTO_ZRELADDR, arch/arm/Kconfig) runs wherever it is loaded, the crash region too."""
    monkeypatch.setattr(SystemView, "machine", lambda self: "armv7l")
    _edit_config(ready, drop=("CONFIG_RELOCATABLE",), add=("CONFIG_AUTO_ZRELADDR=y",))
    assert statuses(ready)["relocatable"] == (PASS, "CONFIG_AUTO_ZRELADDR=y")
    _edit_config(ready, drop=("CONFIG_AUTO_ZRELADDR",), add=("CONFIG_RELOCATABLE=y",))
    status, message = statuses(ready)["relocatable"]
    assert status == WARN and message.startswith("CONFIG_AUTO_ZRELADDR is not set")
