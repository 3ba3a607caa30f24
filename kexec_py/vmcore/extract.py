"""A small vmcore holding only what the kernel log needs: the VMCOREINFO note and the
pages the log reader touches.

Usage: ``python3 -m kexec_py.vmcore.extract VMCORE OUT``

The log is read twice, once through VMCOREINFO's address rules and once through the
program headers' p_vaddr (as vmcore-dmesg reads it), and every 4 KiB page of physical
memory either read touched is kept: in each original PT_LOAD that holds it, at the
same p_vaddr and p_paddr. The result is an ELF core of the original's class, byte
order and machine, which both readers print exactly as they print the original
(a few hundred KiB to a few MiB, mostly zeros: it compresses well), and which holds
nothing of the dead kernel's memory but its log, the printk structures and (x86_64)
the page-table pages on the way to them. The tests keep such extracts of real
guests' vmcores as fixtures.
"""

from __future__ import annotations

import argparse
import sys

from kexec_py.vmcore.core import Vmcore, VmcoreError
from kexec_py.vmcore.dmesg import records

PAGE = 4096


def touched_pages(core: Vmcore) -> list[tuple[int, int]]:
    """(start, end) physical runs of the pages the log's two readings touch."""
    pages: set[int] = set()
    read_phys = core.read_phys

    def recording(paddr: int, size: int) -> bytes:
        data = read_phys(paddr, size)
        pages.update(range(paddr // PAGE, (paddr + max(size, 1) - 1) // PAGE + 1))
        return data
    core.read_phys = recording                  # the translation rules read through it too
    try:
        for by_header in (False, True):
            core.by_header = by_header
            try:
                for _ in records(core):
                    pass
            except VmcoreError:
                if not by_header:
                    raise
    finally:
        core.by_header = False
        del core.read_phys
    runs: list[list[int]] = []
    for page in sorted(pages):
        if runs and runs[-1][1] == page * PAGE:
            runs[-1][1] += PAGE
        else:
            runs.append([page * PAGE, (page + 1) * PAGE])
    return [(a, b) for a, b in runs]


def extract(core: Vmcore) -> bytes:
    """The extract of ``core`` as an ELF core file (see the module doc)."""
    from kexec_py.structs import elf as E
    lay = E.layouts(core.bits, core.byteorder)
    loads = []
    for start, end in touched_pages(core):
        for ld in core.loads:
            a, b = max(start, ld.paddr), min(end, ld.paddr + ld.memsz)
            if a < b:
                loads.append((ld.vaddr + a - ld.paddr, a, core.read_phys(a, b - a)))
    desc = "".join(f"{k}={v}\n" for k, v in core.info.items()).encode()
    note = (lay.nhdr.build(dict(n_namesz=11, n_descsz=len(desc), n_type=0))
            + b"VMCOREINFO\0\0" + desc + bytes(-len(desc) % 4))
    ehsize, phsize = lay.ehdr.sizeof(), lay.phdr.sizeof()
    offset = ehsize + phsize * (1 + len(loads))
    phdrs = [lay.phdr.build(dict(p_type=E.PT_NOTE, p_flags=0, p_offset=offset, p_vaddr=0, p_paddr=0,
                                 p_filesz=len(note), p_memsz=len(note), p_align=0))]
    offset += len(note)
    for vaddr, paddr, data in loads:
        phdrs.append(lay.phdr.build(dict(p_type=E.PT_LOAD, p_flags=E.PF_R | E.PF_W | E.PF_X, p_offset=offset,
                                         p_vaddr=vaddr, p_paddr=paddr, p_filesz=len(data), p_memsz=len(data),
                                         p_align=0)))
        offset += len(data)
    ehdr = lay.ehdr.build(dict(
        e_ident=dict(ei_class=E.BITS_CLASS[core.bits], ei_data=E.BYTEORDER_DATA[core.byteorder],
                     ei_version=E.EV_CURRENT, ei_osabi=0, ei_abiversion=0),
        e_type=E.ET_CORE, e_machine=core.machine, e_version=E.EV_CURRENT, e_entry=0, e_phoff=ehsize,
        e_shoff=0, e_flags=0, e_ehsize=ehsize, e_phentsize=phsize, e_phnum=len(phdrs),
        e_shentsize=0, e_shnum=0, e_shstrndx=0))
    return b"".join([ehdr, *phdrs, note, *(data for _, _, data in loads)])


def main(argv: list[str] | None = None, prog: str = "python3 -m kexec_py.vmcore.extract") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Write a small vmcore holding only the kernel log's pages.")
    parser.add_argument("vmcore", metavar="VMCORE")
    parser.add_argument("out", metavar="OUT")
    args = parser.parse_args(argv)
    try:
        data = extract(Vmcore.open(args.vmcore))
    except VmcoreError as e:
        print(f"{prog}: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"{args.out}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
