"""How this machine's kdump service is set up, read through a SystemView: Debian's
kdump-tools (/etc/default/kdump-tools), Fedora's kdumpctl (/etc/sysconfig/kdump and
/etc/kdump.conf), the capture kernel and initrd each would load, the capture command
line it appends, and the syscall it has kexec use.

Facts (../shared/reference/callers.md, from the packages' own scripts): kdump-config
loads ``/var/lib/kdump/vmlinuz`` and ``/var/lib/kdump/initrd.img`` (links to
``/boot/vmlinuz-$KVER`` and ``/var/lib/kdump/initrd.img-$KVER``), appends
``reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb``
unless KDUMP_CMDLINE_APPEND says otherwise, and needs USE_KDUMP=1; kdumpctl loads
``/boot/vmlinuz-$KVER`` with ``/boot/initramfs-${KVER}kdump.img``, appends
KDUMP_COMMANDLINE_APPEND, and passes KEXEC_ARGS (``-s`` by default on x86_64, aarch64,
ppc64le and s390x).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

DEBIAN_DEFAULTS = "/etc/default/kdump-tools"
FEDORA_SYSCONFIG = "/etc/sysconfig/kdump"
FEDORA_CONF = "/etc/kdump.conf"
DEBIAN_APPEND = "reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb"
FEDORA_SERVICE_LINKS = ("/etc/systemd/system/multi-user.target.wants/kdump.service",
                        "/etc/systemd/system/basic.target.wants/kdump.service")


def shell_assignments(text: str) -> dict[str, str]:
    """The plain ``NAME=value`` lines of a shell configuration file (quotes removed;
    lines that are not simple assignments are skipped)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):].strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        if not name.isidentifier():
            continue
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            continue
        out[name] = " ".join(words)
    return out


@dataclass
class KdumpSetup:
    service: str | None = None              # "kdump-tools" | "kdumpctl" | None
    config_path: str | None = None
    enabled: bool = False                   # USE_KDUMP=1, or kdump.service wanted at boot
    why_not: str = ""                       # when not enabled: what says so
    append: str | None = None               # the capture command line's added parameters
    append_source: str = ""
    cmdline: str | None = None              # the whole capture command line (None: unknown)
    kexec_args: str = ""
    kernels: list[str] = field(default_factory=list)    # candidates, the service's own first
    initrds: list[str] = field(default_factory=list)
    generic_initrds: list[str] = field(default_factory=list)   # the first kernel's: a fallback only

    @property
    def syscall(self) -> str:
        """The syscall mode kexec will use: "s" (kexec_file_load), "c" (kexec_load) or "a"
        (kexec-py's default: kexec_file_load, then kexec_load if it is refused)."""
        args = self.kexec_args.split()
        if "-s" in args or "--kexec-file-syscall" in args:
            return "s"
        if "-c" in args or "--kexec-syscall" in args:
            return "c"
        return "a"


def read_setup(sys, release: str | None) -> KdumpSetup:
    rel = release or "$(uname -r)"
    generic = [f"/boot/initrd.img-{rel}", f"/boot/initramfs-{rel}.img"]
    if sys.exists(DEBIAN_DEFAULTS):
        v = shell_assignments(sys.read_text(DEBIAN_DEFAULTS))
        use = v.get("USE_KDUMP", "0")
        enabled = use == "1"
        append = v.get("KDUMP_CMDLINE_APPEND") or DEBIAN_APPEND     # kdump-config: ${KDUMP_CMDLINE_APPEND:=...}
        base = v.get("KDUMP_CMDLINE") or " ".join(
            w for w in _proc_cmdline(sys).split() if w.partition("=")[0] not in ("crashkernel", "hugepages",
                                                                                "hugepagesz", "abm"))
        return KdumpSetup(
            service="kdump-tools", config_path=DEBIAN_DEFAULTS, enabled=enabled,
            why_not="" if enabled else f"USE_KDUMP={use} in {DEBIAN_DEFAULTS}",
            append=append, cmdline=f"{base} {append}".strip(),
            append_source=(f"KDUMP_CMDLINE_APPEND in {DEBIAN_DEFAULTS}" if v.get("KDUMP_CMDLINE_APPEND")
                           else "kdump-config's default KDUMP_CMDLINE_APPEND")
            + (" after KDUMP_CMDLINE" if v.get("KDUMP_CMDLINE") else " after /proc/cmdline"),
            kexec_args=v.get("KDUMP_KEXEC_ARGS", ""),
            kernels=[*([v["KDUMP_KERNEL"]] if v.get("KDUMP_KERNEL") else []), f"/boot/vmlinuz-{rel}",
                     f"/boot/vmlinux-{rel}"],
            initrds=[*([v["KDUMP_INITRD"]] if v.get("KDUMP_INITRD") else []), f"/var/lib/kdump/initrd.img-{rel}"],
            generic_initrds=generic)
    if sys.exists(FEDORA_SYSCONFIG) or sys.exists(FEDORA_CONF):
        v = shell_assignments(sys.read_text(FEDORA_SYSCONFIG)) if sys.exists(FEDORA_SYSCONFIG) else {}
        enabled = any(sys.exists(p) or sys.path(p).is_symlink() for p in FEDORA_SERVICE_LINKS)
        return KdumpSetup(
            service="kdumpctl", config_path=FEDORA_SYSCONFIG if sys.exists(FEDORA_SYSCONFIG) else FEDORA_CONF,
            enabled=enabled, why_not="" if enabled else "kdump.service is not enabled (systemctl enable kdump)",
            append=v.get("KDUMP_COMMANDLINE_APPEND"),
            cmdline=None if "KDUMP_COMMANDLINE_APPEND" not in v else
            f"{v.get('KDUMP_COMMANDLINE') or _proc_cmdline(sys)} {v['KDUMP_COMMANDLINE_APPEND']}".strip(),
            append_source=f"KDUMP_COMMANDLINE_APPEND in {FEDORA_SYSCONFIG}"
            + (" after KDUMP_COMMANDLINE" if v.get("KDUMP_COMMANDLINE") else " after /proc/cmdline"),
            kexec_args=v.get("KEXEC_ARGS", ""),
            kernels=[f"/boot/vmlinuz-{rel}", f"/boot/vmlinux-{rel}", f"/lib/modules/{rel}/vmlinuz"],
            initrds=[f"/boot/initramfs-{rel}kdump.img", f"/var/lib/kdump/initramfs-{rel}kdump.img"],
            generic_initrds=generic)
    return KdumpSetup(kernels=[f"/boot/vmlinuz-{rel}", f"/boot/vmlinux-{rel}", f"/lib/modules/{rel}/vmlinuz"],
                      initrds=[f"/var/lib/kdump/initrd.img-{rel}", f"/boot/initramfs-{rel}kdump.img"],
                      generic_initrds=generic,
                      why_not=f"neither Debian's kdump-tools ({DEBIAN_DEFAULTS}) nor Fedora's kdumpctl "
                              f"({FEDORA_SYSCONFIG}) is installed")


def _proc_cmdline(sys) -> str:
    try:
        return sys.cmdline
    except Exception:           # SnapshotError: unreadable /proc; the check for crashkernel= says so
        return ""


def first_file(sys, paths: list[str]) -> str | None:
    return next((p for p in paths if sys.file_size(p) is not None), None)
