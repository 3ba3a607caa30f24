"""Signatures kexec_file_load checks on a locked-down kernel."""

from __future__ import annotations


def has_pe_signature(data) -> bool:
    """Whether ``data`` is a PE/COFF image (an EFI-stub bzImage, a UKI) that carries an
    Authenticode signature: a certificate table (data directory 4) inside the file.
    kexec_file_load on a locked-down kernel accepts nothing else (unless IMA
    appraises the file through its security.ima attribute)."""
    import struct
    view = memoryview(data)
    if len(view) < 0x40 or bytes(view[:2]) != b"MZ":
        return False
    lfanew = struct.unpack_from("<I", view, 0x3C)[0]
    opt = lfanew + 24
    if opt + 2 > len(view) or bytes(view[lfanew:lfanew + 4]) != b"PE\0\0":
        return False
    magic = struct.unpack_from("<H", view, opt)[0]
    dirs = opt + (0x70 if magic == 0x20B else 0x60)
    count_at = dirs - 4
    if dirs + 5 * 8 > len(view) or struct.unpack_from("<I", view, count_at)[0] < 5:
        return False
    offset, size = struct.unpack_from("<II", view, dirs + 4 * 8)
    return size > 0 and offset + size <= len(view)
