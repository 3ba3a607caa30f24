"""ifdown on a kernel without networking: nothing to take down, not an error (kexec -e goes on)."""

import errno
import socket

import pytest

from kexec_py.submit import system


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EAFNOSUPPORT])
def test_no_network_stack_is_nothing_to_do(monkeypatch, err):
    def no_socket(*args, **kw):
        raise OSError(err, "no networking")
    monkeypatch.setattr(socket, "socket", no_socket)
    system.ifdown()


def test_other_socket_errors_still_fail(monkeypatch):
    def refused(*args, **kw):
        raise OSError(errno.EMFILE, "too many open files")
    monkeypatch.setattr(socket, "socket", refused)
    with pytest.raises(OSError):
        system.ifdown()
