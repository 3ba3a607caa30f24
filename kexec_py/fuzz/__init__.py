"""Fuzz targets: every parser of untrusted input, each taking bytes.

A target may return anything or raise a KexecError (a clear message for the
user); any other exception is a bug. ``scripts/fuzz`` runs them for long;
tests/test_fuzz.py runs a short smoke round in CI.
"""

from __future__ import annotations

from typing import Callable

from kexec_py.errors import KexecError


def _iomem(data: bytes):
    from kexec_py.system.iomem import parse_iomem
    return parse_iomem(data.decode("utf-8", "replace"))


def _bzimage(data: bytes):
    from kexec_py.image.bzimage import parse_bzimage
    return parse_bzimage(data, path="fuzz")


def _kernel_file(data: bytes):
    """The whole open path: decompression, probing, every x86_64 format."""
    import tempfile

    from kexec_py.arch.x86_64 import X86_64
    from kexec_py.image.open import open_kernel
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return open_kernel(f.name, X86_64().formats)


def _purgatory(data: bytes):
    from kexec_py.arch import relocs_x86_64
    from kexec_py.plan.purgatory import PurgatoryObject
    obj = PurgatoryObject.from_bytes(data, machine="EM_X86_64", relocs=relocs_x86_64.RELOCATIONS)
    return obj.link(0x100000)


def _kcore(data: bytes):
    from kexec_py.system.kcore import parse_kcore
    return parse_kcore(data)


TARGETS: dict[str, Callable[[bytes], object]] = {
    "iomem": _iomem,
    "bzimage": _bzimage,
    "kernel-file": _kernel_file,
    "purgatory": _purgatory,
    "kcore": _kcore,
}


def run_one(name: str, data: bytes) -> None:
    """Run target ``name`` on ``data``; only non-KexecError exceptions escape."""
    try:
        TARGETS[name](data)
    except KexecError:
        pass
