"""Signatures kexec_file_load checks on a locked-down kernel."""

from __future__ import annotations


def has_pe_signature(data) -> bool:
    """Whether ``data`` is a PE/COFF image (an EFI-stub bzImage, a UKI) that carries an
    Authenticode signature: a certificate table (data directory 4) inside the file.
    kexec_file_load on a locked-down kernel accepts nothing else (unless IMA
    appraises the file through its security.ima attribute)."""
    from construct import ConstructError

    from kexec_py.structs import pe
    from kexec_py.structs.layout import offset_of, read_field
    view = memoryview(data)
    security = pe.IMAGE_DIRECTORY_ENTRY_SECURITY
    try:
        read_field(pe.dos_header, "e_magic", view)                   # Consts: raise unless "MZ" ...
        lfanew = read_field(pe.dos_header, "e_lfanew", view)
        read_field(pe.coff_header, "signature", view, lfanew)        # ... and "PE\0\0"
        opt = lfanew + pe.COFF_HEADER_SIZE
        plus = read_field(pe.optional_header_pe32plus, "magic", view, opt) == pe.PE32PLUS_MAGIC
        header = pe.optional_header_pe32plus if plus else pe.optional_header_pe32
        if read_field(header, "number_of_rva_and_sizes", view, opt) <= security:
            return False
        at = opt + offset_of(header, "data_directories") + security * pe.data_directory.sizeof()
        cert = pe.data_directory.parse(bytes(view[at:at + pe.data_directory.sizeof()]))
    except ConstructError:                  # not PE/COFF, or a field beyond the end of the file
        return False
    # the certificate table's "virtual address" is a file offset
    return cert.size > 0 and cert.virtual_address + cert.size <= len(view)
