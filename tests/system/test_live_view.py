"""SystemView on "/" (the running system) falls back to uname where a snapshot has nothing:
the release and the machine when /proc has neither osrelease nor kcore (as in a capture
initramfs whose kernel lacks PROC_KCORE)."""

from __future__ import annotations

import os

from kexec_py.system.view import SystemView


def test_live_view_falls_back_to_uname(monkeypatch):
    view = SystemView("/")
    real_exists = SystemView.exists
    monkeypatch.setattr(SystemView, "exists", lambda self, path: False if path == "/proc/kcore" else
                        real_exists(self, path))
    monkeypatch.setattr(SystemView, "sysctl", lambda self, name: None)
    uname = os.uname()
    assert view.kernel_release() == uname.release
    expected = {"aarch64": "arm64", "i686": "i386"}.get(uname.machine, uname.machine)
    assert view.machine() == expected


def test_a_snapshot_view_does_not_fall_back(tmp_path):
    view = SystemView(tmp_path)
    assert view.machine() is None and view.kernel_release() is None
