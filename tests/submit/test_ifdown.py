"""ifdown on a kernel without networking: nothing to take down, not an error (kexec -e goes on)."""

import errno
import socket

import pytest

from kexec_py.submit import system


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EAFNOSUPPORT])
def test_no_network_stack_is_nothing_to_do(monkeypatch, err):
    import fcntl
    asked = []

    def no_socket(*args, **kw):
        asked.append(args)
        raise OSError(err, "no networking")
    monkeypatch.setattr(socket, "socket", no_socket)
    monkeypatch.setattr(socket, "if_nameindex", lambda: asked.append("if_nameindex") or [])
    monkeypatch.setattr(fcntl, "ioctl", lambda *a: asked.append("ioctl"))
    assert system.ifdown() is None
    assert asked == [(socket.AF_INET, socket.SOCK_DGRAM)]          # it asked once, then did nothing


def test_other_socket_errors_still_fail(monkeypatch):
    def refused(*args, **kw):
        raise OSError(errno.EMFILE, "too many open files")
    monkeypatch.setattr(socket, "socket", refused)
    with pytest.raises(OSError):
        system.ifdown()


def test_ifdown_takes_every_interface_but_loopback_down(tmp_path):
    """In a network namespace of its own (never the host's interfaces): a veth pair that is
    up goes down, loopback stays up."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    for tool in ("unshare", "ip"):
        assert shutil.which(tool), f"{tool} is needed (util-linux, iproute2)"
    repo = Path(__file__).resolve().parents[2]
    script = ("ip link set lo up && ip link add kpy0 type veth peer name kpy1 && "
              "ip link set kpy0 up && ip link set kpy1 up && ip -o link > before && "
              f"{sys.executable} -c 'from kexec_py.submit import system; system.ifdown()' && ip -o link > after")
    p = subprocess.run(["unshare", "--net", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(repo)}, timeout=60)
    assert p.returncode == 0, p.stderr

    def up(listing: str) -> dict[str, bool]:
        return {m.group(1).split("@")[0]: "UP" in m.group(2).split(",")
                for m in re.finditer(r"^\d+: ([^:]+): <([^>]*)>", listing, re.M)}
    before, after = up((tmp_path / "before").read_text()), up((tmp_path / "after").read_text())
    assert before == {"lo": True, "kpy0": True, "kpy1": True}
    assert after == {"lo": True, "kpy0": False, "kpy1": False}
