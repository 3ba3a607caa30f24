"""Kernels with kexec_file_load, built from Debian's kernel source, for the ``-s`` guest tests.

arm64: no Debian arm64 kernel has CONFIG_KEXEC_FILE: bullseye's 5.10, bookworm's 6.1,
bookworm-backports' 6.12, trixie's 6.12 and the 7.x kernels of
trixie-backports, forky, sid and experimental all say "# CONFIG_KEXEC_FILE is
not set" in their /boot/config (cloud-arm64 in every suite; arm64, rt-arm64 and
arm64-16k checked too). ppc64le: Debian's ppc64el kernel has no CONFIG_KEXEC_FILE either;
s390x: Debian's s390x kernel has neither CONFIG_KEXEC_FILE nor CONFIG_CRASH_DUMP
(../shared/reference/next-arches-facts.md). So the test kernels are built here: Debian's own
``linux-source`` package (resolved through the ``linux-source`` metapackage at
run time, never a pinned version), ``allnoconfig`` plus a fragment per arch below
(KEXEC_FILE, kdump, the QEMU machine's console, what busybox and Python need),
cross-compiled with Debian's gcc-aarch64-linux-gnu / gcc-powerpc64le-linux-gnu /
gcc-s390x-linux-gnu (s390x: for kdump, as Debian's has no CONFIG_CRASH_DUMP either). Each is
used as both the first and the capture kernel.

Built once into ``<cache>/<arch>/kexec-file-kernel/`` and reused while the
source package, the fragment and the compiler stay the same; the 1.3 GB source
tree is deleted after the build. A cold build takes 4-7 minutes on 2 cores.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import fetch

BUILDER_VERSION = 1
HOST_TOOLS = (("flex", "flex"), ("bison", "bison"), ("bc", "bc"), ("make", "make"), ("gcc", "gcc"),
              ("xz", "xz-utils"))

# On top of allnoconfig. Every line must survive olddefconfig (checked). The parts both
# kernels share: what busybox and Python need, the /proc and /sys the tests read, kdump.
_LOCALVERSION = 'CONFIG_LOCALVERSION="-kpy-kexec-file"\n'
_USER_SPACE = """\
CONFIG_SMP=y
CONFIG_NR_CPUS=4
CONFIG_PRINTK=y
CONFIG_PRINTK_TIME=y
CONFIG_BUG=y
CONFIG_MULTIUSER=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_SHMEM=y
CONFIG_TMPFS=y
CONFIG_FILE_LOCKING=y
CONFIG_POSIX_TIMERS=y
CONFIG_ADVISE_SYSCALLS=y
CONFIG_MEMBARRIER=y
CONFIG_KALLSYMS=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_TTY=y
"""
_PROC_SYS = """\
CONFIG_PROC_FS=y
CONFIG_PROC_SYSCTL=y
CONFIG_PROC_KCORE=y
CONFIG_SYSFS=y
CONFIG_DEVTMPFS=y
CONFIG_SECURITYFS=y
CONFIG_MAGIC_SYSRQ=y
"""
_KDUMP = """\
CONFIG_KEXEC=y
CONFIG_KEXEC_FILE=y
CONFIG_CRASH_DUMP=y
CONFIG_PROC_VMCORE=y
CONFIG_RELOCATABLE=y
"""

# arm64 for QEMU's virt machine (its PL011 serial port).
CONFIG_FRAGMENT = _LOCALVERSION + _USER_SPACE + """\
CONFIG_SERIAL_AMBA_PL011=y
CONFIG_SERIAL_AMBA_PL011_CONSOLE=y
""" + _PROC_SYS + """\
CONFIG_SUSPEND=y
CONFIG_PM_SLEEP=y
CONFIG_HOTPLUG_CPU=y
""" + _KDUMP + """\
CONFIG_RANDOMIZE_BASE=y
CONFIG_ARM64_4K_PAGES=y
CONFIG_ARM64_VA_BITS_48=y
"""

# ppc64le for QEMU's pseries machine, with Debian's 64 KiB pages and the hypervisor console.
# The kernel's kexec_file_load takes an ELF vmlinux there and needs SHA-256 built in. SLOF
# enters the first kernel through Open Firmware's client interface (PPC_OF_BOOT_TRAMPOLINE,
# which allnoconfig leaves out, as it leaves out ALTIVEC and VSX, which Debian's ppc64el
# user space (built for POWER8) uses); allnoconfig also picks 32-bit defaults that PPC64 does
# not revisit: the 64-bit FRAME_WARN, and arch/powerpc's -Werror is turned off.
PPC64LE_FRAGMENT = _LOCALVERSION + """\
CONFIG_FRAME_WARN=2048
CONFIG_PPC_DISABLE_WERROR=y
CONFIG_PPC64=y
CONFIG_PPC_BOOK3S_64=y
CONFIG_CPU_LITTLE_ENDIAN=y
CONFIG_PPC_PSERIES=y
CONFIG_PPC_OF_BOOT_TRAMPOLINE=y
CONFIG_ALTIVEC=y
CONFIG_VSX=y
CONFIG_PPC_64K_PAGES=y
CONFIG_PPC_RADIX_MMU=y
CONFIG_HVC_CONSOLE=y
""" + _USER_SPACE + _PROC_SYS + """\
CONFIG_HOTPLUG_CPU=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_SHA256=y
""" + _KDUMP


# s390x for QEMU's s390-ccw-virtio machine, console on the SCLP VT220 line (ttysclp0). The
# kernel's s390 kexec_file_load needs SHA-256 through CPACF (CRYPTO_SHA256_S390). Built
# uncompressed (KERNEL_UNCOMPRESSED): under TCG a compressed kernel's decompressor takes
# 65-130 s after kexec -e (next-arches-facts.md; Debian's kernel in tests/test_guest_s390x.py),
# while this one's /init ran 2.9 s after kexec-py -e (measured once, 2026-11-29). On it,
# crashkernel=384M reserved 0x48000000-0x5fffffff and kexec-py -s -l returned 0.
S390X_FRAGMENT = _LOCALVERSION + """\
CONFIG_KERNEL_UNCOMPRESSED=y
CONFIG_SCLP_TTY=y
CONFIG_SCLP_CONSOLE=y
CONFIG_SCLP_VT220_TTY=y
CONFIG_SCLP_VT220_CONSOLE=y
""" + _USER_SPACE + _PROC_SYS + """\
CONFIG_HOTPLUG_CPU=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_SHA256=y
CONFIG_CRYPTO_SHA256_S390=y
""" + _KDUMP


@dataclass(frozen=True)
class Build:
    cross: str              # CROSS_COMPILE
    compiler_package: str
    karch: str              # the kernel's ARCH=
    target: str             # the make target
    output: str             # what it builds, under O=
    fragment: str


BUILDS = {
    "aarch64": Build("aarch64-linux-gnu-", "gcc-aarch64-linux-gnu", "arm64", "Image", "arch/arm64/boot/Image",
                     CONFIG_FRAGMENT),
    "ppc64le": Build("powerpc64le-linux-gnu-", "gcc-powerpc64le-linux-gnu", "powerpc", "vmlinux", "vmlinux",
                     PPC64LE_FRAGMENT),
    "s390x": Build("s390x-linux-gnu-", "gcc-s390x-linux-gnu", "s390", "bzImage", "arch/s390/boot/bzImage",
                   S390X_FRAGMENT),
}


def _run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise fetch.FetchError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                               f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def _ensure_tools(build: Build) -> None:
    tools = (*HOST_TOOLS, (f"{build.cross}gcc", build.compiler_package))
    missing = [pkg for tool, pkg in tools if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise fetch.FetchError(f"building the kexec_file_load test kernel needs {missing}; not root to install them")
    fetch.apt_update()
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def source_package() -> str:
    """The versioned kernel source package the ``linux-source`` metapackage points at."""
    def depends() -> list[str]:
        out = subprocess.run(["apt-cache", "depends", "linux-source"], capture_output=True, text=True).stdout
        return [line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.strip().startswith("Depends:") and "linux-source-" in line]
    found = depends()
    if not found:
        fetch.apt_update()
        found = depends()
    if not found:
        raise fetch.FetchError("apt-cache knows no linux-source-X package behind 'linux-source'")
    return found[0]


def _download(work: Path, package: str) -> Path:
    debs = work / "debs"
    debs.mkdir(exist_ok=True)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if have:
        return have[-1]
    cmd = ["apt-get", "-o", "APT::Sandbox::User=root", "download", package]
    try:
        _run(cmd, cwd=debs)
    except fetch.FetchError:
        fetch.apt_update()           # stale lists name a version the mirror dropped
        _run(cmd, cwd=debs)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        raise fetch.FetchError(f"apt-get download left no .deb for {package}")
    return have[-1]


def _stamp(deb: Path, build: Build) -> str:
    compiler = _run([f"{build.cross}gcc", "--version"]).splitlines()[0]
    return hashlib.sha256(json.dumps([BUILDER_VERSION, deb.name, build.fragment, compiler]).encode()).hexdigest()[:16]


def _unpack_source(deb: Path, dest: Path) -> Path:
    """The kernel tree from the linux-source .deb (its usr/src/linux-source-X.tar.xz)."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _run(["dpkg-deb", "-x", str(deb), tmp])
        tarballs = sorted(Path(tmp, "usr/src").glob("linux-source-*.tar.*"))
        if not tarballs:
            raise fetch.FetchError(f"{deb.name} holds no usr/src/linux-source-*.tar.*")
        dest.mkdir()
        _run(["tar", "-xf", str(tarballs[0]), "-C", str(dest), "--strip-components=1"])
    return dest


def _configure(src: Path, out: Path, env: dict[str, str], config_fragment: str) -> None:
    make = ["make", "-s", "-C", str(src), f"O={out}"]
    _run([*make, "allnoconfig"], env=env)
    fragment = out / "kpy.config"
    fragment.write_text(config_fragment)
    _run([str(src / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out), str(out / ".config"), str(fragment)],
         env=env, cwd=src)
    _run([*make, "olddefconfig"], env=env)
    have = set((out / ".config").read_text().splitlines())
    lost = [line for line in config_fragment.splitlines() if line not in have]
    if lost:
        raise fetch.FetchError(f"the kernel config dropped {lost}: a dependency is missing from the fragment")


def kernel(arch_name: str = "aarch64") -> Path:
    """The built kernel for ``arch_name`` (building it first if needed): arm64's Image, ppc64le's
    vmlinux. Raises FetchError when it cannot be built."""
    arch = fetch.ARCHES[arch_name]
    build_spec = BUILDS[arch_name]
    name = Path(build_spec.output).name
    work = fetch.arch_dir(arch) / "kexec-file-kernel"
    work.mkdir(exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure_tools(build_spec)
        deb = _download(work, source_package())
        stamp = _stamp(deb, build_spec)
        image = work / f"{name}-{stamp}"
        if image.exists():
            return image
        for old in [*work.glob(f"{name}-*"), *work.glob("config-*")]:
            old.unlink()
        build = work / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        try:
            src = _unpack_source(deb, build / "src")
            out = build / "out"
            out.mkdir()
            env = {**os.environ, "ARCH": build_spec.karch, "CROSS_COMPILE": build_spec.cross}
            _configure(src, out, env, build_spec.fragment)
            jobs = str(os.cpu_count() or 2)
            _run(["nice", "-n", "10", "make", "-s", "-C", str(src), f"O={out}", f"-j{jobs}", build_spec.target],
                 env=env)
            shutil.copy2(out / ".config", work / f"config-{stamp}")
            tmp = image.with_suffix(".tmp")
            shutil.copy2(out / build_spec.output, tmp)
            tmp.rename(image)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        for old in (work / "debs").glob("*.deb"):
            if old != deb:
                old.unlink()
        return image
