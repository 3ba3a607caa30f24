"""Fetch the guest's inputs (Debian packages, Python wheels) into a cache.

Nothing is installed on the host: .deb files are fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` into one staging root
per architecture.  Every step leaves a stamp so reruns cost almost nothing.

Cache layout (``$KEXEC_PY_CACHE`` or ``~/.cache/kexec-py``)::

    <arch>/debs/           the downloaded .deb files
    <arch>/manifest.json   the resolved package set (the stamp for debs/)
    <arch>/root/           all packages unpacked on top of each other
    <arch>/pydeps/         kexec_py's dependencies (pip --target), compiled
"""

from __future__ import annotations

import compileall
import fcntl
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    name: str            # kernel/uname name: x86_64, aarch64
    deb: str             # Debian architecture
    multiarch: str       # Debian multiarch triplet
    kernel_meta: str     # metapackage that depends on the current kernel
    pip_platform: str
    qemu_binary: str
    qemu_package: str
    console: str
    console_options: str = "115200"      # after "console=NAME,"; "" for none (a hypervisor console)
    kernel_glob: str = "vmlinuz-*"       # the kernel image under the package's /boot
    extra_packages: tuple[str, ...] = ()     # guest packages this arch adds to GUEST_PACKAGES
    # apt with a package state of its own under the cache (see _private_apt), for an
    # architecture the host's dpkg does not know: nothing on the host changes
    private_apt: bool = False
    pip_skip: tuple[str, ...] = ()           # PY_REQUIREMENTS without a wheel here: from Debian instead
    debian_modules: tuple[str, ...] = ()     # globs under /usr/lib/python3/dist-packages copied to pydeps
    extra_guest_files: tuple[str, ...] = ()  # guest files nothing links to (dlopen'd), added to the image

    def console_param(self) -> str:
        """The kernel's console= parameter for the guest's console."""
        return f"console={self.console},{self.console_options}" if self.console_options \
            else f"console={self.console}"


# Debian's packages of kexec-py's dependencies: the .deb built from debian/ depends on them, and
# tests/test_guest_kdump_config.py installs that .deb with them (checking that they close its
# Depends). python3-click and python3-colorama come with python3-typer.
KEXEC_PY_DEB_DEPENDS = ("python3-cffi-backend", "python3-construct", "python3-pyelftools",
                        "python3-typer", "python3-click", "python3-colorama")
# makedumpfile reads the capture kernel's /proc/vmcore; kdump-tools brings Debian's own kdump-config.
KDUMP_PACKAGES = ("makedumpfile", "kdump-tools", *KEXEC_PY_DEB_DEPENDS)

ARCHES = {
    # makedumpfile reads the capture kernel's /proc/vmcore; kdump-tools brings Debian's own
    # kdump-config, which tests/test_guest_kdump_config.py runs with kexec-py's .deb as /sbin/kexec.
    "x86_64": Arch("x86_64", "amd64", "x86_64-linux-gnu", "linux-image-cloud-amd64",
                   "manylinux2014_x86_64", "qemu-system-x86_64", "qemu-system-x86", "ttyS0",
                   extra_packages=KDUMP_PACKAGES),
    # 32-bit x86: Debian's 686-pae kernel in qemu-system-i386 (HIGHMEM, 3G/1G split).
    "i386": Arch("i386", "i386", "i386-linux-gnu", "linux-image-686-pae",
                 "manylinux2014_i686", "qemu-system-i386", "qemu-system-x86", "ttyS0"),
    # arm64: Debian 12's cloud kernel (a plain EFI-stub Image) in qemu-system-aarch64 -M virt.
    "aarch64": Arch("aarch64", "arm64", "aarch64-linux-gnu", "linux-image-cloud-arm64",
                    "manylinux2014_aarch64", "qemu-system-aarch64", "qemu-system-arm", "ttyAMA0",
                    extra_packages=KDUMP_PACKAGES),
    # ppc64le: Debian 12's powerpc64le kernel (an ELF vmlinux of about 45 MB, 64 KiB pages)
    # in qemu-system-ppc64 -M pseries, console on the hypervisor's virtual terminal.
    # makedumpfile reads the capture kernel's /proc/vmcore (init.sh runs it when present).
    "ppc64le": Arch("ppc64le", "ppc64el", "powerpc64le-linux-gnu", "linux-image-powerpc64le",
                    "manylinux2014_ppc64le", "qemu-system-ppc64", "qemu-system-ppc", "hvc0",
                    console_options="", kernel_glob="vmlinux-*", extra_packages=KDUMP_PACKAGES),
    # 32-bit arm (armhf): Debian 12's armmp-lpae zImage in qemu-system-arm -M virt -cpu cortex-a15.
    # PyPI has no armv7l wheel of cffi: Debian's C backend (_cffi_backend, all kexec_py's
    # generated module imports) instead. python3.11 dlopens libgcc_s.so.1 (pthread_cancel).
    "arm": Arch("arm", "armhf", "arm-linux-gnueabihf", "linux-image-armmp-lpae",
                "manylinux2014_armv7l", "qemu-system-arm", "qemu-system-arm", "ttyAMA0",
                extra_packages=(*KDUMP_PACKAGES, "libgcc-s1"), private_apt=True,
                pip_skip=("cffi",), debian_modules=("_cffi_backend.*.so",),
                extra_guest_files=("/lib/arm-linux-gnueabihf/libgcc_s.so.1",)),
    # The same with Debian's non-LPAE armmp kernel (on -M virt,highmem=off), where makedumpfile
    # works: on armmp-lpae it takes PAGE_OFFSET for 0xc0400000 (next-arches-facts.md).
    "armmp": Arch("armmp", "armhf", "arm-linux-gnueabihf", "linux-image-armmp",
                  "manylinux2014_armv7l", "qemu-system-arm", "qemu-system-arm", "ttyAMA0",
                  extra_packages=(*KDUMP_PACKAGES, "libgcc-s1"), private_apt=True,
                  pip_skip=("cffi",), debian_modules=("_cffi_backend.*.so",),
                  extra_guest_files=("/lib/arm-linux-gnueabihf/libgcc_s.so.1",)),
    # s390x: Debian 12's only s390x kernel (a compressed bzImage-style image, CONFIG_CRASH_DUMP
    # unset) in qemu-system-s390x -M s390-ccw-virtio, console on the SCLP VT220 line.
    # Packages through a private apt state (no dpkg architecture added); Debian's kexec-tools
    # there needs only libc. libgcc_s for python3.11 as on armhf (glibc dlopens it).
    "s390x": Arch("s390x", "s390x", "s390x-linux-gnu", "linux-image-s390x",
                  "manylinux2014_s390x", "qemu-system-s390x", "qemu-system-misc", "ttysclp0",
                  console_options="", extra_packages=(*KDUMP_PACKAGES, "libgcc-s1"), private_apt=True,
                  extra_guest_files=("/lib/s390x-linux-gnu/libgcc_s.so.1",)),
}

# Packages the guest needs besides the kernel.  Their library dependencies
# (Depends on lib*/zlib* packages, recursively) are added automatically.
GUEST_PACKAGES = (
    "busybox-static",
    "kexec-tools",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
)
def _host_pinned(*names: str) -> tuple[str, ...]:
    """The project's dependencies at the versions this host runs the tests with, so that the
    guests run kexec-py on the same ones (a distribution not installed here: unpinned)."""
    from importlib import metadata
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pinned.append(name)
    return tuple(pinned)


PY_REQUIREMENTS = _host_pinned("pyelftools", "cffi", "construct", "typer")
GUEST_PYTHON = (3, 11)
DIST_PACKAGES = "usr/lib/python3/dist-packages"       # where Debian's python3-* modules live
_LIBRARY_PACKAGE = re.compile(r"^(lib|zlib)")

# Parts of the standard library a loader never needs (keeps the initrd small).
_STDLIB_DROP = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
                "pydoc_data", "distutils", "unittest/test", "turtle.py")
_DYNLOAD_DROP = re.compile(
    r"^(_test|_ctypes_test|_xx|xx|audioop|ossaudiodev|nis|_sqlite3|_dbm|_curses|readline)")


class FetchError(RuntimeError):
    """A guest input could not be fetched: the guest tests must fail."""


def cache_dir() -> Path:
    base = os.environ.get("KEXEC_PY_CACHE") or Path.home() / ".cache" / "kexec-py"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def arch_dir(arch: Arch) -> Path:
    path = cache_dir() / arch.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise FetchError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


# --- host tools ---------------------------------------------------------------

_apt_updated = False


def apt_update(*, again: bool = False) -> None:
    """apt-get update, once per process (``again``: once more, for lists that came back short)."""
    global _apt_updated
    if again or not _apt_updated:
        try:
            _run(["apt-get", "update"])
        except FetchError as err:
            # A mirror caught mid-sync fails one index (seen with bookworm-security
            # i386); apt keeps the previous lists, which still resolve and download.
            if "Some index files failed to download" not in str(err):
                raise
            print(f"warning: {str(err).splitlines()[-1]}", file=sys.stderr)
        _apt_updated = True


def ensure_host_tools(arch: Arch) -> None:
    """Install QEMU (and dpkg-deb/apt bits) on the host if they are missing."""
    missing = [pkg for tool, pkg in ((arch.qemu_binary, arch.qemu_package),
                                     ("dpkg-deb", "dpkg"))
               if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise FetchError(f"missing host packages {missing} and not root to install them")
    if os.environ.get("KEXEC_PY_NO_SYSTEM_CHANGES"):
        raise FetchError(f"missing host packages {missing}, and KEXEC_PY_NO_SYSTEM_CHANGES forbids installing "
                         "them: run scripts/test-all first")
    apt_update()
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _apt_options(deb_arch: str) -> list[str]:
    """The apt options for deb_arch: a private package state for a private_apt arch."""
    if any(a.private_apt and a.deb == deb_arch for a in ARCHES.values()):
        return _private_apt(deb_arch)
    return []


def _private_update(deb_arch: str, *, again: bool = False) -> None:
    lists = cache_dir() / f"apt-{deb_arch}" / "lists"
    if again or not any(lists.glob("*_Packages*")):
        try:
            _run(["apt-get", *_private_apt(deb_arch), "update"])
        except FetchError as err:        # a mirror mid-sync fails one index; main still resolves
            if "Some index files failed to download" not in str(err):
                raise


def _ensure_foreign_arch(arch: Arch) -> None:
    if arch.private_apt:
        _private_update(arch.deb)
        return
    native = _run(["dpkg", "--print-architecture"]).strip()
    if arch.deb == native:
        return
    if arch.deb not in _run(["dpkg", "--print-foreign-architectures"]).split():
        if os.environ.get("KEXEC_PY_NO_SYSTEM_CHANGES"):
            raise FetchError(f"dpkg knows no {arch.deb} architecture, and KEXEC_PY_NO_SYSTEM_CHANGES forbids "
                             "adding it: run scripts/test-all (or scripts/guest-deps) first")
        _run(["dpkg", "--add-architecture", arch.deb])
        apt_update()


# --- resolving and downloading .debs -----------------------------------------

def _apt_depends(packages: list[str], deb_arch: str, qualifier: str | None = None) -> dict[str, list[str]]:
    """Direct Depends/PreDepends of each package (first of each alternative
    group), in one apt-cache call: each call costs a second or more here.
    Packages are named "pkg:<qualifier>" (default: deb_arch)."""
    proc = subprocess.run(["apt-cache", *_apt_options(deb_arch), "depends", "--no-recommends", "--no-suggests",
                           "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                           *[f"{p}:{qualifier or deb_arch}" for p in packages]],
                          capture_output=True, text=True)
    found: dict[str, list[str]] = {}
    deps: list[str] = []
    in_alternatives = False
    for line in proc.stdout.splitlines():
        if line and not line[0].isspace():
            deps = found.setdefault(line.split(":")[0], [])
            continue
        m = re.match(r"\s*(\|)?(?:Pre)?Depends: (\S+)", line)
        if not m:
            continue
        if not in_alternatives and not m.group(2).startswith("<"):
            deps.append(m.group(2).split(":")[0])
        in_alternatives = bool(m.group(1))
    return found


# Architecture: all packages (python3-typer, ...) that apt names "pkg:all" for a foreign architecture
_ARCH_ALL: set[str] = set()


def _apt_depends_any(packages: list[str], deb_arch: str) -> dict[str, list[str]]:
    """_apt_depends, asking again as "pkg:all" for what apt does not know as "pkg:<foreign arch>"."""
    found = _apt_depends(packages, deb_arch)
    rest = [p for p in packages if p not in found]
    if rest:
        arch_all = _apt_depends(rest, deb_arch, qualifier="all")
        _ARCH_ALL.update(arch_all)
        found.update(arch_all)
    return found


def _depends_with_update(packages: list[str], deb_arch: str) -> dict[str, list[str]]:
    found = _apt_depends_any(packages, deb_arch)
    for attempt in range(3):            # no or stale package lists: update; a foreign-arch index
        if not set(packages) - set(found):      # that failed to download transiently gets more tries
            break
        if attempt:
            time.sleep(10 * attempt)
        if _apt_options(deb_arch):
            _private_update(deb_arch, again=True)
        else:
            apt_update(again=attempt > 0)
        found = _apt_depends_any(packages, deb_arch)
    missing = sorted(set(packages) - set(found))
    if missing:
        raise FetchError(f"apt-cache knows no package {missing} for {deb_arch}")
    return found


def resolve_packages(arch: Arch) -> list[str]:
    """The kernel's versioned package, the guest packages and their libraries."""
    _ensure_foreign_arch(arch)
    meta = _depends_with_update([arch.kernel_meta], arch.deb)[arch.kernel_meta]
    kernels = [d for d in meta if d.startswith("linux-image-")]
    if not kernels:
        raise FetchError(f"{arch.kernel_meta} depends on no linux-image package")
    seen = [kernels[0]]
    level = [*GUEST_PACKAGES, *arch.extra_packages]
    while level:                 # breadth first, one apt-cache call per level
        seen += level
        found = _depends_with_update(level, arch.deb)
        level = sorted({d for p in level for d in found[p]
                        if _LIBRARY_PACKAGE.match(d) and d not in seen})
    return seen


def _downloaded(debs: Path, pkg: str) -> Path | None:
    hits = sorted(debs.glob(f"{pkg}_*.deb"))
    return hits[-1] if hits else None


def _download(arch: Arch, packages: list[str], dest: Path) -> None:
    cmd = ["apt-get", "-o", "APT::Sandbox::User=root", *_apt_options(arch.deb), "download",
           *[f"{p}:{'all' if p in _ARCH_ALL else arch.deb}" for p in packages]]
    try:
        _run(cmd, cwd=dest)
    except FetchError:
        if arch.private_apt:
            _private_update(arch.deb, again=True)
        else:
            apt_update()           # stale lists name versions the mirror dropped
        _run(cmd, cwd=dest)


def fetch_debs(arch: Arch, refresh: bool = False) -> dict[str, str]:
    """Make sure every needed .deb is in the cache; returns {package: file}."""
    manifest = arch_dir(arch) / "manifest.json"
    debs = arch_dir(arch) / "debs"
    debs.mkdir(exist_ok=True)
    asked = [arch.kernel_meta, *GUEST_PACKAGES, *arch.extra_packages]     # a new package: resolve again
    if manifest.exists() and not refresh:
        recorded = json.loads(manifest.read_text())
        files = recorded["debs"]
        if recorded.get("asked") == asked and all((debs / f).exists() for f in files.values()):
            return files
    if refresh:
        if arch.private_apt:
            _private_update(arch.deb, again=True)
        else:
            apt_update()
        shutil.rmtree(debs)
        debs.mkdir()
    packages = resolve_packages(arch)
    wanted = [p for p in packages if _downloaded(debs, p) is None]
    if wanted:
        _download(arch, wanted, debs)
    files = {}
    for pkg in packages:
        deb = _downloaded(debs, pkg)
        if deb is None:
            raise FetchError(f"apt-get download left no .deb for {pkg}")
        files[pkg] = deb.name
    manifest.write_text(json.dumps({"asked": asked, "debs": files}, indent=1))
    return files


def unpack_debs(arch: Arch, files: dict[str, str]) -> Path:
    """Unpack all .debs into one staging root (redone when the set changes)."""
    root = arch_dir(arch) / "root"
    stamp = arch_dir(arch) / "root.stamp"
    want = json.dumps([sorted(files.values()), _STDLIB_DROP, _DYNLOAD_DROP.pattern])
    if root.is_dir() and stamp.exists() and stamp.read_text() == want:
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name in files.values():
        _run(["dpkg-deb", "-x", str(arch_dir(arch) / "debs" / name), str(root)])
    _prune_stdlib(root / "usr/lib/python3.11")
    compile_tree(root / "usr/lib/python3.11", "/usr/lib/python3.11")
    if (root / DIST_PACKAGES).is_dir():       # Debian's python3-* packages: as their postinst would
        compile_tree(root / DIST_PACKAGES, f"/{DIST_PACKAGES}")
    stamp.write_text(want)
    return root


# --- Python side --------------------------------------------------------------

def _check_host_python() -> None:
    if sys.version_info[:2] != GUEST_PYTHON:
        raise FetchError(f"the host Python must be {GUEST_PYTHON} to precompile the guest's "
                         f"bytecode (running {sys.version.split()[0]})")


def compile_tree(path: Path, guest_path: str) -> None:
    """Byte-compile a tree so the guest never compiles (unchecked-hash pycs)."""
    _check_host_python()
    ok = compileall.compile_dir(
        str(path), ddir=guest_path, quiet=1, workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise FetchError(f"compileall failed under {path}")


def _prune_stdlib(stdlib: Path) -> None:
    for rel in _STDLIB_DROP:
        target = stdlib / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    for lib in (stdlib / "lib-dynload").glob("*.so"):
        if _DYNLOAD_DROP.match(lib.name):
            lib.unlink()
    for cfg in stdlib.glob("config-*"):
        shutil.rmtree(cfg, ignore_errors=True)


def fetch_pydeps(arch: Arch, root: Path | None = None) -> Path:
    """pip-install kexec_py's dependencies for the guest (binary wheels only)."""
    target = arch_dir(arch) / "pydeps"
    stamp = arch_dir(arch) / "pydeps.stamp"
    requirements = [r for r in PY_REQUIREMENTS if r.split("==")[0] not in arch.pip_skip]
    want = json.dumps([arch.pip_platform, *requirements, *arch.debian_modules])
    if target.is_dir() and stamp.exists() and stamp.read_text() == want:
        return target
    shutil.rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
          "--target", str(target), "--platform", arch.pip_platform,
          "--python-version", "%d.%d" % GUEST_PYTHON, "--implementation", "cp",
          "--only-binary=:all:", *requirements])
    for pattern in arch.debian_modules:
        found = sorted((root / "usr/lib/python3/dist-packages").glob(pattern)) if root else []
        if not found:
            raise FetchError(f"no {pattern} under {root}/usr/lib/python3/dist-packages")
        for path in found:
            shutil.copy2(path, target / path.name)
    shutil.rmtree(target / "bin", ignore_errors=True)
    compile_tree(target, "/opt/kpy/lib")
    stamp.write_text(want)
    return target


# --- kernels of an architecture dpkg does not know, without changing the host ----------

# 32-bit arm (armhf): Debian's two kernel flavours, as issue 17 tests them. The LPAE one
# runs on qemu-system-arm -machine virt, the other on -machine virt,highmem=off.
ARM_KERNELS = {"armmp-lpae": "linux-image-armmp-lpae", "armmp": "linux-image-armmp"}


def _private_apt(deb_arch: str) -> list[str]:
    """apt options for a package state of ``deb_arch`` of our own, under the cache: its
    lists, its archives, no dpkg status. Reads the host's sources.list; writes nothing
    outside the cache (no dpkg --add-architecture)."""
    top = cache_dir() / f"apt-{deb_arch}"
    for sub in ("lists/partial", "cache/archives/partial"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    return ["-o", f"APT::Architecture={deb_arch}", "-o", f"APT::Architectures::={deb_arch}",
            "-o", f"Dir::State::Lists={top / 'lists'}", "-o", f"Dir::Cache={top / 'cache'}",
            "-o", "Dir::State::status=/dev/null", "-o", "APT::Sandbox::User=root"]


def fetch_foreign_kernel(deb_arch: str, meta: str, name: str) -> Path:
    """The kernel image of metapackage ``meta`` for ``deb_arch`` (its current version),
    downloaded and unpacked under the cache with a private apt state; cached."""
    top = cache_dir() / f"apt-{deb_arch}"
    stamp = top / f"{meta}.kernel"
    if stamp.exists() and Path(stamp.read_text()).is_file():
        return Path(stamp.read_text())
    apt = _private_apt(deb_arch)
    with open(top / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lists = top / "lists"
        if not any(lists.glob("*_Packages*")):
            try:
                _run(["apt-get", *apt, "update"])
            except FetchError as err:        # a mirror mid-sync (security index): main still resolves
                if "Some index files failed to download" not in str(err):
                    raise
        proc = subprocess.run(["apt-cache", *apt, "depends", meta], capture_output=True, text=True)
        found = re.findall(r"Depends: (linux-image-\S+)", proc.stdout)
        if not found:
            raise FetchError(f"apt-cache ({deb_arch}) knows no kernel package behind {meta}: {proc.stderr[-500:]}")
        debs = top / "debs"
        debs.mkdir(exist_ok=True)
        if _downloaded(debs, found[0]) is None:
            _run(["apt-get", *apt, "download", found[0]], cwd=debs)
        root = top / "root" / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(_downloaded(debs, found[0])), str(root)])
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if len(kernels) != 1:
            raise FetchError(f"expected one kernel under {root / 'boot'}, found {kernels}")
        stamp.write_text(str(kernels[0]))
        return kernels[0]


def fetch_arm_kernel(flavour: str) -> Path:
    """Debian's armhf zImage of ``flavour`` ("armmp-lpae" or "armmp")."""
    return fetch_foreign_kernel("armhf", ARM_KERNELS[flavour], flavour)


@dataclass
class Inputs:
    arch: Arch
    root: Path          # unpacked Debian packages
    pydeps: Path        # pip --target tree
    kernel: Path        # the guest kernel image

    @property
    def kernel_version(self) -> str:
        return self.kernel.name.split("-", 1)[1]


def fetch(arch_name: str = "x86_64", refresh: bool = False) -> Inputs:
    """Everything the guest images are built from; cached, idempotent."""
    if arch_name not in ARCHES:
        raise FetchError(f"unknown arch {arch_name!r}; known: {sorted(ARCHES)}")
    arch = ARCHES[arch_name]
    with open(arch_dir(arch) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # concurrent test runs share the cache
        root = unpack_debs(arch, fetch_debs(arch, refresh))
        pydeps = fetch_pydeps(arch, root)
    kernels = sorted((root / "boot").glob(arch.kernel_glob))
    if len(kernels) != 1:
        raise FetchError(f"expected one kernel image under {root / 'boot'}, found {kernels}")
    return Inputs(arch, root, pydeps, kernels[0])
