"""`kexec -e` as systemd-shutdown runs it: the root file system read-only, an empty
environment, every file descriptor closed, nowhere to write a cache.

The command runs in mount and network namespaces of its own (the host's root is
remounted read-only there only; a snapshot whose kexec_loaded says 1 is bound over
/sys; ifdown meets only a loopback device) and behind the syscall guard in its
killing mode: kexec-py must get all the way to reboot(LINUX_REBOOT_CMD_KEXEC), where
the guard kills it. Nothing reaches the host kernel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests import guard
from tests.conftest import SYSTEMS

REPO = Path(__file__).resolve().parent.parent


def run_as_systemd_shutdown(root: Path) -> int:
    for tool in ("unshare", "mount", "env"):
        assert shutil.which(tool), f"{tool} is needed (util-linux, coreutils)"
    # systemd-shutdown's environment is empty; the interpreter is told where the source
    # tree is on its command line, not through PYTHONPATH
    code = (f"import sys; sys.argv = ['kexec', '-e']; sys.path.insert(0, {str(REPO)!r}); "
            "from kexec_py.cli import main; main()")
    script = (f"mount --bind {root}/sys /sys && mount -o remount,bind,ro / && "
              f"exec 0<&- 1>&- 2>&- && exec env -i {sys.executable} -c \"{code}\"")
    cmd = guard.guarded(["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script], kill=True)
    return subprocess.run(cmd, timeout=120).returncode


def test_exec_reaches_the_reboot_on_a_read_only_root_with_nothing_inherited(tmp_path):
    root = tmp_path / "snapshot"
    shutil.copytree(SYSTEMS / "x86_64-qemu-2cpu", root)
    (root / "sys/kernel/kexec_loaded").write_text("1\n")
    assert guard.attempted(run_as_systemd_shutdown(root)), "kexec-py did not reach reboot(KEXEC)"


def test_with_nothing_loaded_it_stops_before_the_reboot(tmp_path):
    """The control: the same run with kexec_loaded 0 exits (1, as kexec-tools) and calls nothing."""
    root = tmp_path / "snapshot"
    shutil.copytree(SYSTEMS / "x86_64-qemu-2cpu", root)
    (root / "sys/kernel/kexec_loaded").write_text("0\n")
    assert run_as_systemd_shutdown(root) == 1
