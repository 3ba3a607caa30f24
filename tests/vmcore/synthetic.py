"""Synthetic vmcores, laid out from first principles, for the vmcore readers' tests.

An ELF64 core file (System V ABI: ELF header, program headers, a PT_NOTE holding a
VMCOREINFO note, PT_LOADs) whose memory holds a kernel log in one of the three layouts
the kernel has had:

* the lockless ring buffer of Linux 5.10+ (kernel/printk/printk_ringbuffer.h and .c:
  struct printk_ringbuffer / prb_desc_ring / prb_data_ring / prb_desc /
  prb_data_blk_lpos / printk_info; a descriptor's state_var is its id with the state
  in the top two bits; a data block is an unsigned long id and the text, its size
  rounded up to a word; a block that does not fit before the ring's end goes to
  the ring's start, with its id also written where it would have begun);
* the variable-length records of Linux 3.5..5.9 (struct printk_log: u64 ts_nsec,
  u16 len, u16 text_len, u16 dict_len, u8 facility, u8 flags:5 level:3; records
  aligned to 8; a zeroed header at the buffer's end when the next record wraps);
* the plain character buffer of older kernels (log_buf, log_end, log_buf_len).

Memory is placed the way each architecture maps it (see kexec_py.vmcore.core's
docstring for the rules, taken from the kernel's documentation): x86_64 with a
KASLR'd phys_base and direct map reached through 4-level page tables whose entries
carry an SME encryption bit, arm64 with kimage_voffset and a linear map in the lower
half (VA_BITS 48), ppc64le at 0xc000000000000000. ``wrong_linear_vaddr`` writes the
direct map's PT_LOAD with a wrong p_vaddr (as a loader with a stale PAGE_OFFSET
would): a reader that trusts p_vaddr (vmcore-dmesg) then cannot find the log.

Nothing here imports kexec_py: the expected output is Debian's vmcore-dmesg run on
the same file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

EM_X86_64, EM_AARCH64, EM_PPC64 = 62, 183, 21
PT_LOAD, PT_NOTE = 1, 4
U64 = (1 << 64) - 1

# -- memory ---------------------------------------------------------------------------


@dataclass
class Region:
    paddr: int
    vaddr: int                  # what the PT_LOAD's p_vaddr says
    data: bytearray


@dataclass
class Memory:
    regions: list[Region] = field(default_factory=list)

    def add(self, paddr: int, size: int, vaddr: int) -> None:
        self.regions.append(Region(paddr, vaddr, bytearray(size)))

    def write(self, paddr: int, data: bytes) -> None:
        for r in self.regions:
            if r.paddr <= paddr and paddr + len(data) <= r.paddr + len(r.data):
                r.data[paddr - r.paddr:paddr - r.paddr + len(data)] = data
                return
        raise ValueError(f"no region holds {paddr:#x}+{len(data)}")


def elf_core(machine: int, byteorder: str, memory: Memory, vmcoreinfo: str) -> bytes:
    """An ELF64 ET_CORE file: a PT_NOTE with the VMCOREINFO note, a PT_LOAD per region."""
    e = "<" if byteorder == "little" else ">"
    name = b"VMCOREINFO\0"
    desc = vmcoreinfo.encode()
    note = struct.pack(e + "III", len(name), len(desc), 0) + name.ljust(12, b"\0") + desc
    note += bytes(-len(note) % 4)
    phnum = 1 + len(memory.regions)
    offset = 64 + 56 * phnum
    phdrs = struct.pack(e + "IIQQQQQQ", PT_NOTE, 0, offset, 0, 0, len(note), len(note), 0)
    body = note
    for r in memory.regions:
        at = offset + len(body)
        pad = -at % 4096
        body += bytes(pad)
        at += pad
        phdrs += struct.pack(e + "IIQQQQQQ", PT_LOAD, 7, at, r.vaddr, r.paddr, len(r.data), len(r.data), 0)
        body += r.data
    ident = b"\x7fELF" + bytes([2, 1 if byteorder == "little" else 2, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack(e + "HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    return ehdr + phdrs + body


# -- address spaces -------------------------------------------------------------------

@dataclass
class Space:
    """Where the kernel image and the direct map are, in virtual and physical memory."""
    machine: int
    byteorder: str
    image_paddr: int
    image_vaddr: int
    ram_paddr: int
    linear_base: int            # vaddr = linear_base + paddr in the direct/linear map
    info: list[str]             # the architecture's VMCOREINFO lines
    image_size: int = 0x40000
    ram_size: int = 0x30000
    page_tables_at: int | None = None       # x86_64: offset of init_top_pgt in the image

    def image(self, offset: int) -> tuple[int, int]:
        """(vaddr, paddr) of ``offset`` into the kernel image."""
        return self.image_vaddr + offset, self.image_paddr + offset

    def linear(self, paddr: int) -> int:
        return (self.linear_base + paddr) & U64


X86_KMAP = 0xFFFF_FFFF_8000_0000


def x86_64_space() -> Space:
    phys_base = 0x1A00000                          # the kernel runs 26 MiB above its link address
    image_paddr = 0x3000000
    sme = 1 << 47
    return Space(EM_X86_64, "little", image_paddr, X86_KMAP + image_paddr - phys_base,
                 ram_paddr=0x1F0000, linear_base=0xFFFF_9A5E_4000_0000, page_tables_at=0x10000,
                 info=[f"NUMBER(phys_base)={phys_base}", f"SYMBOL(init_top_pgt)=PGT",
                       "NUMBER(pgtable_l5_enabled)=0", f"NUMBER(KERNEL_IMAGE_SIZE)={1 << 30}",
                       f"NUMBER(sme_mask)={sme}", f"KERNELOFFSET={image_paddr - phys_base:x}"])


def arm64_space() -> Space:
    image_vaddr = 0xFFFF_8000_0800_0000 + 0x1234_0000      # KIMAGE_VADDR + a KASLR offset
    image_paddr = 0x4020_0000
    phys_offset = 0x4000_0000
    page_offset = 0xFFFF_0000_0000_0000                     # -(1 << 48)
    return Space(EM_AARCH64, "little", image_paddr, image_vaddr, ram_paddr=0x4800_0000,
                 linear_base=(page_offset - phys_offset) & U64,
                 info=["NUMBER(VA_BITS)=48", f"NUMBER(kimage_voffset)={image_vaddr - image_paddr:#x}",
                       f"NUMBER(PHYS_OFFSET)={phys_offset:#x}", "NUMBER(TCR_EL1_T1SZ)=16",
                       f"KERNELOFFSET={0x1234_0000:x}"])


def arm64_pre_5_4_space() -> Space:
    """The layout before Linux 5.4: the linear map in the upper half of the kernel's
    address space (PAGE_OFFSET = -(1 << (VA_BITS - 1))), the image in the lower half."""
    image_vaddr = 0xFFFF_0000_0800_0000 + 0x0567_0000      # KIMAGE_VADDR (old) + a KASLR offset
    image_paddr = 0x8008_0000
    phys_offset = 0x8000_0000
    page_offset = 0xFFFF_8000_0000_0000                     # -(1 << 47)
    return Space(EM_AARCH64, "little", image_paddr, image_vaddr, ram_paddr=0x8800_0000,
                 linear_base=(page_offset - phys_offset) & U64,
                 info=["NUMBER(VA_BITS)=48", f"NUMBER(kimage_voffset)={image_vaddr - image_paddr:#x}",
                       f"NUMBER(PHYS_OFFSET)={phys_offset:#x}", f"KERNELOFFSET={0x0567_0000:x}"])


def ppc64_space(byteorder: str = "little") -> Space:
    return Space(EM_PPC64, byteorder, 0x0, 0xC000_0000_0000_0000, ram_paddr=0x2000_0000,
                 linear_base=0xC000_0000_0000_0000, info=["NUMBER(RADIX_MMU)=1"])


def _x86_64_page_tables(space: Space, mem: Memory) -> int:
    """4-level tables mapping the RAM region into the direct map: its first 2 MiB with
    4 KiB pages, the next 2 MiB with one 2 MiB page. Returns init_top_pgt's vaddr."""
    sme = 1 << 47
    present_rw = 0x3
    pgd_v, pgd_p = space.image(space.page_tables_at)
    pud_p, pmd_p, pte_p = pgd_p + 0x1000, pgd_p + 0x2000, pgd_p + 0x3000
    v0 = space.linear(0)
    assert v0 % (1 << 30) == 0

    def entry(index: int, value: int, table: int) -> None:
        mem.write(table + 8 * index, struct.pack("<Q", value | sme))
    entry((v0 >> 39) & 511, pud_p | present_rw, pgd_p)
    entry((v0 >> 30) & 511, pmd_p | present_rw, pud_p)
    entry(0, pte_p | present_rw, pmd_p)                      # 0..2 MiB: a page table
    entry(1, 0x200000 | present_rw | 0x80, pmd_p)            # 2..4 MiB: one large page (PSE)
    for page in range(space.ram_paddr >> 12, 512):
        entry(page, (page << 12) | present_rw, pte_p)
    return pgd_v


def _memory(space: Space, wrong_linear_vaddr: bool) -> Memory:
    mem = Memory()
    mem.add(space.image_paddr, space.image_size, space.image_vaddr)
    linear_vaddr = space.linear(space.ram_paddr)
    if wrong_linear_vaddr:
        linear_vaddr = (linear_vaddr + 0x10_0000_0000) & U64       # a stale PAGE_OFFSET
    mem.add(space.ram_paddr, space.ram_size, linear_vaddr)
    return mem


# -- the lockless ring buffer (5.10+) --------------------------------------------------

@dataclass
class Record:
    ts_nsec: int
    text: bytes
    state: int = 2              # 0 reserved, 1 committed, 2 finalized, 3 reusable
    text_len: int | None = None     # printk_info.text_len when it differs from len(text)
    no_data: bool = False       # a data-less record (begin == next)
    stale_id: bool = False      # state_var holds the id of the slot's previous record


DEFAULT_RECORDS = [
    Record(0, b"Linux version 6.1.0-synthetic (kexec_py tests) #1 SMP PREEMPT_DYNAMIC"),
    Record(1_234_567, b"Command line: console=ttyS0 crashkernel=384M panic=1", state=1),
    Record(2_000_001_999, b"tab\there, escape \x1b[1mbold\x1b[0m, DEL \x7f, NUL \x00 end"),
    Record(3_500_000_000, "UTF-8 caf\u00e9 \u00fc\u00df \u2603 and the block wraps".encode()),
    Record(3_600_000_000, b"a reusable record is not printed", state=3),
    Record(4_000_000_000, b"", no_data=True),
    Record(4_100_000_000, b""),
    Record(5_000_000_000, b"line one\nline two\r\vform\ffeed"),
    Record(5_500_000_000, b"a stale descriptor is not printed", stale_id=True),
    Record(6_000_000_000, b"truncated: only these bytes", text_len=200),
    Record(123_456_789_012_345_678, b"a time stamp of more than five digits of seconds"),
    Record(7_000_000_000, b"KPY-TOKEN-0123456789abcdef written by the kexec_py guest harness"),
    Record(7_100_000_000, b"\xff\xfe\x80 high bytes\x01\x02\x1f"),
    Record(8_000_000_000, b"the head, still being written", state=0),
]


def lockless_vmcore(space: Space, records: list[Record] = DEFAULT_RECORDS, *,
                    wrong_linear_vaddr: bool = False, first_id: int | None = None,
                    first_lpos: int = 3 * 2048 + 1810) -> bytes:
    """A vmcore whose kernel log is ``records`` in a lockless ring buffer: 16 descriptors
    (the struct printk_ringbuffer, descs in the kernel image; infos and the 2 KiB text
    ring in the direct map), the oldest record ``first_id`` (default: 6 ids before the
    id space wraps, so the ids wrap too), the text ring's first block at ``first_lpos``."""
    bo, word, wfmt = space.byteorder, 8, "Q"
    e = "<" if bo == "little" else ">"
    count_bits, size_bits = 4, 11
    count, ring_size = 1 << count_bits, 1 << size_bits
    id_mask = (1 << 62) - 1
    mem = _memory(space, wrong_linear_vaddr)
    lines = list(space.info)
    if space.page_tables_at is not None:
        lines[lines.index("SYMBOL(init_top_pgt)=PGT")] = f"SYMBOL(init_top_pgt)={_x86_64_page_tables(space, mem):x}"

    prb_var_v, prb_var_p = space.image(0x100)
    rb_v, rb_p = space.image(0x200)
    descs_v, descs_p = space.image(0x1000)
    infos_p = space.ram_paddr + 0xE000                 # direct map, in the 4 KiB pages
    text_p = space.ram_paddr + 0xFE00                 # straddles the 2 MiB boundary (x86_64)
    DESC, INFO = 24, 88

    first = (id_mask - 5) if first_id is None else first_id
    lpos = first_lpos
    for n, rec in enumerate(records):
        rid = (first + n) & id_mask
        slot = rid % count
        if rec.no_data:
            begin = end = 0x3                          # NO_LPOS: begin == next
        else:
            size = -(-(word + len(rec.text)) // word) * word
            begin = lpos
            if lpos % ring_size + size > ring_size:    # does not fit before the end: wrap
                mem.write(text_p + lpos % ring_size, struct.pack(e + wfmt, rid))
                start = lpos - lpos % ring_size + ring_size
            else:
                start = lpos
            mem.write(text_p + start % ring_size, struct.pack(e + wfmt, rid) + rec.text)
            end = lpos = start + size
        sv_id = (rid - count) & id_mask if rec.stale_id else rid
        mem.write(descs_p + slot * DESC, struct.pack(e + "QQQ", (rec.state << 62) | sv_id, begin, end))
        text_len = len(rec.text) if rec.text_len is None else rec.text_len
        info = struct.pack(e + "QQHBBI", n + 100, rec.ts_nsec, text_len, 0, (6 << 5), 0) + bytes(64)
        mem.write(infos_p + slot * INFO, info)
    head = (first + len(records) - 1) & id_mask
    # struct printk_ringbuffer: desc_ring (count_bits, descs, infos, head_id, tail_id,
    # last_finalized_seq), text_data_ring (size_bits, data, head_lpos, tail_lpos), fail
    rb = struct.pack(e + "I4xQQQQQ", count_bits, descs_v, space.linear(infos_p), head, first, 0)
    rb += struct.pack(e + "I4xQQQ", size_bits, space.linear(text_p), lpos, first_lpos)
    rb += struct.pack(e + "Q", 0)
    mem.write(rb_p, rb)
    mem.write(prb_var_p, struct.pack(e + "Q", rb_v))
    lines += [
        "OSRELEASE=6.1.0-synthetic", "PAGESIZE=4096",
        f"SYMBOL(prb)={prb_var_v:x}",
        f"SYMBOL(printk_rb_static)={rb_v:x}", f"SYMBOL(clear_seq)={rb_v + 0x80:x}",
        f"SIZE(printk_ringbuffer)={len(rb)}",
        "OFFSET(printk_ringbuffer.desc_ring)=0", "OFFSET(printk_ringbuffer.text_data_ring)=48",
        "OFFSET(printk_ringbuffer.fail)=80",
        "SIZE(prb_desc_ring)=48", "OFFSET(prb_desc_ring.count_bits)=0", "OFFSET(prb_desc_ring.descs)=8",
        "OFFSET(prb_desc_ring.infos)=16", "OFFSET(prb_desc_ring.head_id)=24",
        "OFFSET(prb_desc_ring.tail_id)=32",
        f"SIZE(prb_desc)={DESC}", "OFFSET(prb_desc.state_var)=0", "OFFSET(prb_desc.text_blk_lpos)=8",
        "SIZE(prb_data_blk_lpos)=16", "OFFSET(prb_data_blk_lpos.begin)=0", "OFFSET(prb_data_blk_lpos.next)=8",
        f"SIZE(printk_info)={INFO}", "OFFSET(printk_info.seq)=0", "OFFSET(printk_info.ts_nsec)=8",
        "OFFSET(printk_info.text_len)=16", "OFFSET(printk_info.caller_id)=20",
        "OFFSET(printk_info.dev_info)=24",
        "SIZE(dev_printk_info)=64", "OFFSET(dev_printk_info.subsystem)=0", "LENGTH(printk_info_subsystem)=16",
        "OFFSET(dev_printk_info.device)=16", "LENGTH(printk_info_device)=48",
        "SIZE(prb_data_ring)=32", "OFFSET(prb_data_ring.size_bits)=0", "OFFSET(prb_data_ring.data)=8",
        "SIZE(atomic_long_t)=8", "OFFSET(atomic_long_t.counter)=0",
        "CRASHTIME=1764380000",
    ]
    return elf_core(space.machine, bo, mem, "\n".join(lines) + "\n")


# -- variable-length records (3.5 .. 5.9) ---------------------------------------------

@dataclass
class LogRecord:
    ts_nsec: int
    text: bytes
    dict_: bytes = b""


DEFAULT_LOG_RECORDS = [
    LogRecord(0, b"Linux version 5.4.0-synthetic"),
    LogRecord(1_000_000, b"pci 0000:00:01.0: [8086:7000] type 00 class 0x060100",
              b"SUBSYSTEM=pci\0DEVICE=+pci:0000:00:01.0"),
    LogRecord(2_000_000_000, b"esc \x1b and \xc3\xa9"),
    LogRecord(3_000_000_000, b"the next one wraps"),
    LogRecord(4_000_000_000, b"KPY-TOKEN-fedcba9876543210 after the wrap"),
    LogRecord(5_000_000_000, b"multi\nline"),
]


def variable_length_vmcore(space: Space, records: list[LogRecord] = DEFAULT_LOG_RECORDS,
                           first_idx: int = 200, buf_len: int = 512) -> bytes:
    """A vmcore whose log_buf (in the direct map) holds ``records`` from ``first_idx``,
    wrapping to the buffer's start through a zeroed end marker."""
    e = "<" if space.byteorder == "little" else ">"
    mem = _memory(space, False)
    lines = list(space.info)
    if space.page_tables_at is not None:
        lines[lines.index("SYMBOL(init_top_pgt)=PGT")] = f"SYMBOL(init_top_pgt)={_x86_64_page_tables(space, mem):x}"
    HDR = 16
    buf = bytearray(buf_len)
    idx = first_idx
    for rec in records:
        size = -(-(HDR + len(rec.text) + len(rec.dict_)) // 8) * 8
        if idx + size + HDR > buf_len:                 # no room for it and a marker: wrap
            buf[idx:idx + HDR] = bytes(HDR)
            idx = 0
        buf[idx:idx + size] = (struct.pack(e + "QHHHBB", rec.ts_nsec, size, len(rec.text), len(rec.dict_), 0, 6 << 5)
                               + rec.text + rec.dict_).ljust(size, b"\0")
        idx += size
    buf_p = space.ram_paddr + 0xFF00                 # straddles the 2 MiB boundary (x86_64)
    mem.write(buf_p, bytes(buf))
    vars_v, vars_p = space.image(0x100)
    mem.write(vars_p, struct.pack(e + "QIII", space.linear(buf_p), buf_len, first_idx, idx))
    lines += ["OSRELEASE=5.4.0-synthetic", "PAGESIZE=4096",
              f"SYMBOL(log_buf)={vars_v:x}", f"SYMBOL(log_buf_len)={vars_v + 8:x}",
              f"SYMBOL(log_first_idx)={vars_v + 12:x}", f"SYMBOL(log_next_idx)={vars_v + 16:x}",
              f"SIZE(printk_log)={HDR}", "OFFSET(printk_log.ts_nsec)=0", "OFFSET(printk_log.len)=8",
              "OFFSET(printk_log.text_len)=10"]
    return elf_core(space.machine, space.byteorder, mem, "\n".join(lines) + "\n")


def plain_vmcore(space: Space, text: bytes, buf_len: int = 256) -> bytes:
    """A vmcore with the pre-3.5 character buffer: ``text`` written from the start,
    wrapping, so log_end = len(text)."""
    e = "<" if space.byteorder == "little" else ">"
    mem = _memory(space, False)
    lines = list(space.info)
    if space.page_tables_at is not None:
        lines[lines.index("SYMBOL(init_top_pgt)=PGT")] = f"SYMBOL(init_top_pgt)={_x86_64_page_tables(space, mem):x}"
    buf = bytearray(buf_len)
    for i, b in enumerate(text):
        buf[i % buf_len] = b
    buf_v, buf_p = space.image(0x2000)
    mem.write(buf_p, bytes(buf))
    vars_v, vars_p = space.image(0x100)
    mem.write(vars_p, struct.pack(e + "QIII", buf_v, len(text), buf_len, min(len(text), buf_len)))
    lines += ["OSRELEASE=2.6.32-synthetic", f"SYMBOL(log_buf)={vars_v:x}", f"SYMBOL(log_end)={vars_v + 8:x}",
              f"SYMBOL(log_buf_len)={vars_v + 12:x}", f"SYMBOL(logged_chars)={vars_v + 16:x}"]
    return elf_core(space.machine, space.byteorder, mem, "\n".join(lines) + "\n")
