"""Assemble the two guest initramfs images from the fetched inputs.

* capture initrd: busybox, Debian's vmcore-dmesg (with its libraries),
  Debian's makedumpfile where the arch fetches it (fetch.ARCHES), Python 3.11
  with only what kexec_py.vmcore.dmesg imports (/usr/bin/kdump-py-dmesg), and
  the shared /init, which notices /proc/vmcore and runs the capture checks;
* main initrd: the capture initrd's base plus Python 3.11, kexec_py's
  dependencies, the working tree's kexec_py package, Debian's /sbin/kexec,
  the kernel (/boot/vmlinuz), the capture initrd (/boot/capture.img) and
  the scenario (/etc/kpy/...).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from . import fetch
from .cpio import Archive

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST_PYLIB = "/opt/kpy/lib"      # kexec_py and its pip dependencies
PYTHON = "/usr/bin/python3.11"
MAKEDUMPFILE = "/usr/bin/makedumpfile"

KEXEC_PY_WRAPPER = f"""#!/bin/sh
# kexec-py as the guest runs it: the working tree's kexec_py, precompiled.
export PYTHONPATH={GUEST_PYLIB} PYTHONDONTWRITEBYTECODE=1
exec {PYTHON} -m kexec_py "$@"
"""

# kexec_py's vmcore-dmesg (kexec_py.vmcore.dmesg), in both images; the capture kernel's
# /init runs it on /proc/vmcore next to Debian's vmcore-dmesg. -S: no site module.
DMESG = "/usr/bin/kdump-py-dmesg"
DMESG_WRAPPER = f"""#!/bin/sh
# kexec_py's vmcore reader as the guest runs it: python3 -m kexec_py.vmcore.dmesg.
export PYTHONPATH={GUEST_PYLIB} PYTHONDONTWRITEBYTECODE=1
exec {PYTHON} -S -m kexec_py.vmcore.dmesg "$@"
"""
# What Python needs at start-up besides what the host's run reports (other locales'
# codecs; os.py is the landmark by which it finds its standard library).
DMESG_EXTRA_MODULES = ("kexec_py.vmcore.dmesg",      # run as __main__: importtime does not list it
                       "kexec_py.vmcore.extract",    # init.sh's second run (imports nothing more)
                       "encodings.ascii", "encodings.latin_1", "os")
# hashlib (imported by construct) does without OpenSSL's _hashlib: Debian's python3.11
# has the md5/sha*/blake2 modules built in. That spares libcrypto's 4.7 MB.
DMESG_SKIP_MODULES = ("_hashlib", "_ssl")


class ImageError(RuntimeError):
    """The guest image cannot be built (e.g. a shared library is missing)."""


class Staging:
    """An Archive fed from host trees mounted at guest paths.

    ``mounts`` maps guest prefixes to host directories; the first mount is the
    unpacked Debian root.  Shared libraries are found the way the guest's
    dynamic loader will find them, so a missing one fails the build instead
    of the boot.
    """

    def __init__(self, inputs: fetch.Inputs) -> None:
        self.inputs = inputs
        self.archive = Archive()
        multiarch = inputs.arch.multiarch
        self.lib_dirs = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}", "/lib", "/usr/lib"]
        self.mounts: list[tuple[str, Path]] = [("/", inputs.root)]

    def host(self, guest: str) -> Path:
        path = PurePosixPath(guest)
        for prefix, host_dir in reversed(self.mounts):
            if path == PurePosixPath(prefix) or PurePosixPath(prefix) in path.parents:
                return host_dir / path.relative_to(prefix)
        raise ImageError(f"{guest} is outside every mount")  # "/" always matches

    def add(self, guest: str) -> None:
        """Copy one path from the Debian root, reproducing symlink chains."""
        if guest in self.archive:
            return
        src = self.host(guest)
        if src.is_symlink():
            target = src.readlink().as_posix()
            self.archive.add_symlink(guest, target)
            self.add(_resolve_link(guest, target))
        elif src.is_file():
            self.archive.add_file(guest, src)
            if _is_elf(src):
                self.add_libraries(guest)
        else:
            raise ImageError(f"{guest} not found in the guest inputs ({src})")

    def add_libraries(self, guest: str) -> None:
        """Add the dynamic loader and the shared libraries ``guest`` needs."""
        interp, needed, runpath = _elf_dynamic(self.host(guest))
        if interp:
            self.add(interp)
        origin = str(PurePosixPath(guest).parent)
        dirs = [d.replace("$ORIGIN", origin) for d in runpath] + self.lib_dirs
        for soname in needed:
            found = next((f"{d}/{soname}" for d in dirs
                          if os.path.lexists(self.host(f"{d}/{soname}"))), None)
            if found is None:
                raise ImageError(f"{guest} needs {soname}, which no fetched package provides")
            self.add(found)

    def add_tree(self, guest: str, host_dir: Path) -> None:
        """Copy a whole host tree and pull in the libraries its ELF files need."""
        self.mounts.append((guest, host_dir))
        self.archive.add_tree(guest, host_dir)
        for path in sorted(host_dir.rglob("*.so*")):
            if path.is_file() and not path.is_symlink() and _is_elf(path):
                self.add_libraries(f"{guest}/{path.relative_to(host_dir).as_posix()}")


def _resolve_link(guest: str, target: str) -> str:
    if target.startswith("/"):
        return target
    parts: list[str] = []
    for part in (PurePosixPath(guest).parent / target).parts[1:]:
        if part == ".." and parts:
            parts.pop()
        elif part not in (".", ".."):
            parts.append(part)
    return "/" + "/".join(parts)


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _elf_dynamic(path: Path) -> tuple[str | None, list[str], list[str]]:
    """(PT_INTERP, DT_NEEDED list, DT_RUNPATH/DT_RPATH dirs) of an ELF file."""
    interp, needed, runpath = None, [], []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
        for sec in elf.iter_sections():
            if not isinstance(sec, DynamicSection):
                continue
            for tag in sec.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                    runpath += value.split(":")
    return interp, needed, runpath


# --- the two images -------------------------------------------------------------

def _base(inputs: fetch.Inputs) -> Staging:
    """What both images share: busybox, vmcore-dmesg, /init and device nodes."""
    st = Staging(inputs)
    st.add("/bin/busybox")
    st.add("/sbin/vmcore-dmesg")
    if os.path.lexists(st.host(MAKEDUMPFILE)):      # fetched for some arches only (fetch.ARCHES)
        st.add(MAKEDUMPFILE)
    st.archive.add_file("/init", HERE / "init.sh", mode=0o755)
    for d in ("/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc",
              "/usr/bin", "/usr/sbin", "/sbin", "/bin", "/mnt"):
        st.archive.mkdir(d)
    st.archive.add_chardev("/dev/console", 5, 1)
    st.archive.add_chardev("/dev/null", 1, 3, mode=0o666)
    return st


def build_capture(inputs: fetch.Inputs, dest: Path) -> Path:
    st = _base(inputs)
    with tempfile.TemporaryDirectory(prefix="kpy-image-") as tmp:
        _add_dmesg_python(st, Path(tmp))
    st.archive.write_gzip(dest, level=9)
    return dest


def dmesg_modules(pydeps: Path) -> list[str]:
    """The modules ``python3 -S -m kexec_py.vmcore.dmesg`` imports (the host's Python 3.11,
    the guest's version, says which, reading a synthetic vmcore of tests/vmcore)."""
    from tests.vmcore import synthetic
    with tempfile.TemporaryDirectory(prefix="kpy-dmesg-") as tmp:
        core = Path(tmp) / "vmcore"
        core.write_bytes(synthetic.lockless_vmcore(synthetic.x86_64_space()))
        env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{pydeps}", PYTHONDONTWRITEBYTECODE="1")
        run = subprocess.run([sys.executable, "-S", "-X", "importtime", "-m", "kexec_py.vmcore.dmesg", str(core)],
                             env=env, capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise ImageError(f"kexec_py.vmcore.dmesg failed on the host: {run.stderr[-2000:]}")
    names = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    return [n for n in names if n and n != "imported package" and n not in DMESG_SKIP_MODULES] \
        + list(DMESG_EXTRA_MODULES)


def _add_dmesg_python(st: Staging, workdir: Path) -> None:
    """Python and just the modules kexec_py.vmcore.dmesg imports (about 3 MB, against
    30 MB for the first kernel's full Python): the stdlib's sources and their
    precompiled bytecode, the extension modules with their libraries, whole
    dependency packages (construct) and the working tree's compiled kexec_py modules."""
    st.add(PYTHON)
    st.archive.add_symlink("/usr/bin/python3", "python3.11")
    stdlib = "/usr/lib/python3.11"
    kexec_py = _compiled_kexec_py(workdir)
    st.mounts.append((f"{GUEST_PYLIB}/kexec_py", kexec_py))

    def add_source(guest: str) -> bool:
        if not os.path.isfile(st.host(guest)):
            return False
        st.add(guest)
        p = PurePosixPath(guest)
        pyc = f"{p.parent}/__pycache__/{p.stem}.cpython-311.pyc"
        if os.path.isfile(st.host(pyc)):
            st.add(pyc)
        return True

    for name in dmesg_modules(st.inputs.pydeps):
        rel, top = name.replace(".", "/"), name.split(".")[0]
        if top == "kexec_py":
            base = f"{GUEST_PYLIB}/{rel}"
        elif (st.inputs.pydeps / top).is_dir():
            if f"{GUEST_PYLIB}/{top}" not in st.archive:
                st.archive.add_tree(f"{GUEST_PYLIB}/{top}", st.inputs.pydeps / top)
            continue
        else:
            base = f"{stdlib}/{rel}"
        if add_source(f"{base}.py") or add_source(f"{base}/__init__.py"):
            continue
        for ext in sorted(st.host(f"{stdlib}/lib-dynload").glob(f"{name}.cpython-311-*.so")):
            st.add(f"{stdlib}/lib-dynload/{ext.name}")
    st.archive.add_bytes(DMESG, DMESG_WRAPPER.encode(), 0o755)


def _compiled_kexec_py(workdir: Path) -> Path:
    """Copy the working tree's kexec_py package and byte-compile the copy."""
    dest = workdir / "kexec_py"
    shutil.copytree(REPO / "kexec_py", dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    try:
        fetch.compile_tree(dest, f"{GUEST_PYLIB}/kexec_py")
    except fetch.FetchError as err:
        # A broken working tree must not break the reference test; the
        # guest will show the same error when it imports the package.
        print(f"warning: {err}")
    return dest


def _add_interpreter(st: Staging) -> None:
    st.add(PYTHON)
    for extra in st.inputs.arch.extra_guest_files:      # dlopen'd, so no ELF file names them
        st.add(extra)
    st.archive.add_symlink("/usr/bin/python3", "python3.11")
    st.archive.add_tree("/usr/lib/python3.11", st.host("/usr/lib/python3.11"))
    st.archive.add_tree("/etc/python3.11", st.host("/etc/python3.11"))
    for ext in sorted(st.host("/usr/lib/python3.11/lib-dynload").glob("*.so")):
        st.add_libraries(f"/usr/lib/python3.11/lib-dynload/{ext.name}")


def _add_source_tree(st: Staging, workdir: Path) -> None:
    """The working tree's kexec_py and pip's dependencies, run by the /usr/bin/kexec-py wrapper."""
    st.add_tree(GUEST_PYLIB, st.inputs.pydeps)
    st.archive.add_tree(f"{GUEST_PYLIB}/kexec_py", _compiled_kexec_py(workdir))
    st.archive.add_bytes("/usr/bin/kexec-py", KEXEC_PY_WRAPPER.encode(), 0o755)
    st.archive.add_bytes("/usr/bin/kdump-py", KEXEC_PY_WRAPPER.replace("-m kexec_py ", "-m kexec_py.kdump ").encode(), 0o755)
    st.archive.add_bytes(DMESG, DMESG_WRAPPER.encode(), 0o755)


def _add_installed_package(st: Staging, unpacked: Path, workdir: Path) -> None:
    """kexec-py as its .deb installs it (``unpacked`` is a ``dpkg-deb -x`` root: /usr/sbin/kexec-py,
    /usr/sbin/kexec, the modules under dist-packages) with Debian's python3-* dependencies,
    all byte-compiled as their postinst scripts would (py3compile); no working-tree code."""
    site = fetch.DIST_PACKAGES
    st.add_tree(f"/{site}", st.host(f"/{site}"))            # Debian's python3-* (fetch.KEXEC_PY_DEB_DEPENDS)
    modules = workdir / "site"
    shutil.copytree(unpacked / site, modules)
    fetch.compile_tree(modules, f"/{site}")
    st.archive.add_tree(f"/{site}", modules)
    st.archive.add_tree("/usr/sbin", unpacked / "usr/sbin")


def build_main(inputs: fetch.Inputs, capture_img: Path, scenario_files: dict[str, str],
               dest: Path, extra_files: dict[str, Path] | None = None,
               installed: Path | None = None) -> Path:
    """The first kernel's initrd; ``scenario_files`` maps guest paths to text,
    ``extra_files`` guest paths to host files (kernels to load, ...). kexec-py is the working
    tree's, run as /usr/bin/kexec-py, unless ``installed`` gives an unpacked .deb root: then it
    is that package's /usr/sbin/kexec-py and nothing of the working tree."""
    st = _base(inputs)
    st.add("/sbin/kexec")
    _add_interpreter(st)
    with tempfile.TemporaryDirectory(prefix="kpy-image-") as tmp:
        if installed is None:
            _add_source_tree(st, Path(tmp))
        else:
            _add_installed_package(st, installed, Path(tmp))
    st.archive.add_file("/boot/vmlinuz", inputs.kernel, mode=0o644)
    st.archive.add_file("/boot/capture.img", capture_img, mode=0o644)
    for path, text in scenario_files.items():
        st.archive.add_bytes(path, text.encode(), 0o755 if path.endswith(".sh") else 0o644)
    for path, host in (extra_files or {}).items():         # executables stay executable
        st.archive.add_file(path, host, mode=0o755 if os.access(host, os.X_OK) else 0o644)
    st.archive.write_gzip(dest, level=6)
    return dest


def shell_env(values: dict[str, str]) -> str:
    """A sourceable file exporting ``values``."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
