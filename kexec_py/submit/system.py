"""The other things kexec does to the machine around a load: take the network
down before jumping, and hand over to the init system's shutdown."""

from __future__ import annotations

import fcntl
import os
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
SHUTDOWN_PATHS = ("/sbin/shutdown", "/etc/shutdown", "/bin/shutdown")


def ifdown() -> None:
    """Clear IFF_UP on every interface but loopback, so no DMA runs into the new kernel.
    A kernel built without networking (socket() fails with ENOSYS or EAFNOSUPPORT)
    has no interface to take down."""
    import errno
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EAFNOSUPPORT):
            return
        raise
    with s:
        for _, name in socket.if_nameindex():
            if name == "lo" or ":" in name:
                continue
            req = struct.pack("16sH14x", name.encode()[:15], 0)
            try:
                flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
                if flags & IFF_UP:
                    fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", name.encode()[:15],
                                                                      flags & ~IFF_UP))
            except OSError:
                continue            # an interface that vanished or refuses: not worth failing for


def shutdown() -> None:
    """Replace this process with ``shutdown -r now`` (the distribution then runs ``kexec -e``)."""
    for path in SHUTDOWN_PATHS:
        if os.access(path, os.X_OK):
            os.execv(path, [path, "-r", "now"])
    raise OSError(2, "no shutdown program in " + ", ".join(SHUTDOWN_PATHS))
