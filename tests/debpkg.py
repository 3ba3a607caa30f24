"""Build kexec-py's .deb as a distribution's build daemon does, for the tests that check the
package (tests/test_packages.py) and the guest test that installs it (test_guest_kdump_config).

The repository's tracked files (their working-tree content) are copied to a temporary
directory and ``dpkg-buildpackage -us -uc -b`` runs there, with Debian's own python3 first on
PATH and behind the syscall guard (the build's smoke test runs kexec-py).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kexec_py import KEXEC_TOOLS_INTERFACE, __version__
from tests import guard

ROOT = Path(__file__).resolve().parent.parent
# a build daemon's PATH: Debian's python3 and its modules, not a developer's pyenv or venv
BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
SITE = "usr/lib/python3/dist-packages"


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=BUILD_ENV["PATH"]) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: scripts/test-all installs the package build tools")


def tracked_tree(dest: Path) -> Path:
    """The repository's tracked files (their working-tree content) under dest/kexec-py."""
    src = dest / "kexec-py"
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for name in filter(None, names):
        path = ROOT / name
        if path.is_symlink() or path.is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name, follow_symlinks=False)
    return src


def build(work: Path) -> Path:
    """Build the .deb under ``work``; returns its path (the test fails if the build does)."""
    need("dpkg-buildpackage", "dh", "pybuild", "dpkg-deb", "python3")
    src = tracked_tree(work)
    proc = subprocess.run(guard.guarded(["dpkg-buildpackage", "-us", "-uc", "-b"]), cwd=src, env=BUILD_ENV,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"dpkg-buildpackage failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    # the build's smoke test ran the built tree with Debian's typer
    assert f"kexec-tools-compatible {KEXEC_TOOLS_INTERFACE} (kexec-py {__version__})" in proc.stdout
    (package,) = work.glob("kexec-py_*_all.deb")
    return package


def unpack(deb: Path, root: Path) -> Path:
    """``dpkg-deb -x``: the package's files under ``root``, as dpkg would install them."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()
