"""The dead kernel's log out of a vmcore, printed as Debian's vmcore-dmesg (kexec-tools
2.0.25) prints it.

Usage: ``python3 -m kexec_py.vmcore.dmesg VMCORE`` (``kdump-py dmesg VMCORE``).

Three layouts of the kernel log, the newest first; VMCOREINFO says which one the
dead kernel had and where it is:

* the lockless ring buffer (Linux 5.10 and later; kernel/printk/printk_ringbuffer.h):
  SYMBOL(prb) is a pointer to a ``struct printk_ringbuffer``, whose descriptor ring
  (2**count_bits ``prb_desc``, one ``printk_info`` each) and text data ring
  (2**size_bits bytes) are read whole. Records run from the descriptor ring's tail_id
  to its head_id, both included; a record is printed when its descriptor's state_var
  holds its own id and the state (its top two bits) is committed or finalized. Its
  text is the data block from text_blk_lpos.begin to .next, taken modulo the ring's
  size, after the block's leading id (one unsigned long); a block that wrapped
  (begin > next) is at the ring's start; begin == next is a record without text;
  printk_info.text_len bytes are printed, fewer when the block holds fewer.
* variable-length records in log_buf (Linux 3.5 to 5.9): from log_first_idx to
  log_next_idx, each a ``struct printk_log`` header (SIZE(printk_log), or SIZE(log)
  before 3.11) followed by text_len bytes of text (and a dictionary, not printed); a
  header whose len is 0 marks the buffer's end, and reading goes on at index 0.
  Like vmcore-dmesg, that end marker is printed as a line of its own (its time stamp
  and text_len, both 0 in the kernel's marker, give "[    0.000000] ").
* a plain character buffer (before 3.5): the last min(log_end, log_buf_len) bytes,
  oldest first, as they are.

Each record is one line: ``[%5lu.%06lu] `` (ts_nsec in seconds and microseconds,
truncated), its text, a newline. Bytes of the text that are neither printable ASCII
(0x20..0x7e) nor white space (tab, newline, vertical tab, form feed, carriage return)
are written as ``\\xNN`` (two lower-case hex digits); a newline inside a record's text
stays as it is. Continuation records (LOG_CONT) are printed as lines of their own.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import BinaryIO, Iterator

from kexec_py.vmcore.core import Vmcore, VmcoreError

PROG = "kdump-py dmesg"

DESC_COMMITTED, DESC_FINALIZED = 1, 2
_UNPRINTABLE = re.compile(rb"[^\x09-\x0d\x20-\x7e]")


def escape(text: bytes) -> bytes:
    """Bytes that are neither printable ASCII nor white space as \\xNN."""
    return _UNPRINTABLE.sub(lambda m: b"\\x%02x" % m.group()[0], text)


def line(ts_nsec: int, text: bytes) -> bytes:
    seconds, rest = divmod(ts_nsec, 1_000_000_000)
    return b"[%5d.%06d] " % (seconds, rest // 1000) + escape(text) + b"\n"


def records(core: Vmcore) -> Iterator[bytes]:
    """The log's output, a line (or, for the oldest layout, the raw buffer) at a time."""
    if core.symbol("prb") is not None:
        return _lockless(core)
    if core.symbol("log_first_idx") is not None:
        return _variable_length(core)
    return _plain(core)


# -- Linux 5.10 and later ---------------------------------------------------------------

class _Fields:
    """SIZE()/OFFSET() values from VMCOREINFO, each required."""

    def __init__(self, core: Vmcore) -> None:
        self.core = core

    def __getattr__(self, key: str) -> int:
        kind, _, name = key.partition("__")
        label = {"size": "SIZE", "off": "OFFSET"}[kind]
        return self.core.need(f"{label}({name.replace('__', '.')})")


def _lockless(core: Vmcore) -> Iterator[bytes]:
    f = _Fields(core)
    word = core.pointer_bits // 8
    bo = core.byteorder

    def uint(blob: bytes, at: int, size: int = word) -> int:
        return int.from_bytes(blob[at:at + size], bo)

    prb = core.read(core.word(core.need("SYMBOL(prb)")), f.size__printk_ringbuffer)
    desc_ring = f.off__printk_ringbuffer__desc_ring
    data_ring = f.off__printk_ringbuffer__text_data_ring
    count_bits = uint(prb, desc_ring + f.off__prb_desc_ring__count_bits, 4)
    size_bits = uint(prb, data_ring + f.off__prb_data_ring__size_bits, 4)
    if not (count_bits < 32 and size_bits < 32):       # the kernel's log is at most 2**25 bytes
        raise VmcoreError(f"{core.path}: the printk ring claims 2**{count_bits} descriptors and "
                          f"2**{size_bits} bytes of text", "the dump's log is damaged")
    count = 1 << count_bits
    desc_size, info_size = f.size__prb_desc, f.size__printk_info
    descs = core.read(uint(prb, desc_ring + f.off__prb_desc_ring__descs), count * desc_size)
    infos = core.read(uint(prb, desc_ring + f.off__prb_desc_ring__infos), count * info_size)
    ring_size = 1 << size_bits
    text_data = core.read(uint(prb, data_ring + f.off__prb_data_ring__data), ring_size)
    counter = f.off__atomic_long_t__counter
    tail = uint(prb, desc_ring + f.off__prb_desc_ring__tail_id + counter)
    head = uint(prb, desc_ring + f.off__prb_desc_ring__head_id + counter)

    state_shift = word * 8 - 2
    id_mask = (1 << state_shift) - 1
    state_at = f.off__prb_desc__state_var + counter
    begin_at = f.off__prb_desc__text_blk_lpos + f.off__prb_data_blk_lpos__begin
    next_at = f.off__prb_desc__text_blk_lpos + f.off__prb_data_blk_lpos__next
    ts_at, len_at = f.off__printk_info__ts_nsec, f.off__printk_info__text_len

    if (head - tail) & id_mask >= count:
        raise VmcoreError(f"{core.path}: the printk ring's tail id {tail:#x} and head id {head:#x} "
                          f"are more than its {count} descriptors apart", "the dump's log is damaged")
    rid = tail
    while True:
        d = (rid % count) * desc_size
        i = (rid % count) * info_size
        state_var = uint(descs, d + state_at)
        if state_var & id_mask == rid and state_var >> state_shift in (DESC_COMMITTED, DESC_FINALIZED):
            ts = uint(infos, i + ts_at, 8)
            begin, end = uint(descs, d + begin_at) % ring_size, uint(descs, d + next_at) % ring_size
            text = b""
            if begin != end:
                if begin > end:                         # the block wrapped: it is at the ring's start
                    begin = 0
                begin += word                           # the block starts with its descriptor's id
                length = min(uint(infos, i + len_at, 2), (end - begin) & ((1 << 64) - 1))
                text = text_data[begin:begin + length]
            yield line(ts, text)
        if rid == head:
            break
        rid = (rid + 1) & id_mask


# -- Linux 3.5 to 5.9 --------------------------------------------------------------------

def _variable_length(core: Vmcore) -> Iterator[bytes]:
    def first(*keys: str) -> int:
        for k in keys:
            if (v := core.value(k)) is not None:
                return v
        return core.need(keys[-1])

    header_size = first("SIZE(log)", "SIZE(printk_log)")
    ts_at = first("OFFSET(log.ts_nsec)", "OFFSET(printk_log.ts_nsec)")
    len_at = first("OFFSET(log.len)", "OFFSET(printk_log.len)")
    text_len_at = first("OFFSET(log.text_len)", "OFFSET(printk_log.text_len)")
    log_buf = core.word(core.need("SYMBOL(log_buf)"))
    buf_len = core.word(core.need("SYMBOL(log_buf_len)"), 4)
    first_idx = core.word(core.need("SYMBOL(log_first_idx)"), 4)
    next_idx = core.word(core.need("SYMBOL(log_next_idx)"), 4)
    if not 0 < buf_len < 1 << 31:
        raise VmcoreError(f"{core.path}: log_buf_len is {buf_len}", "the dump's log is damaged")
    buf = core.read(log_buf, buf_len)
    bo = core.byteorder

    def damaged(what: str, idx: int) -> VmcoreError:
        return VmcoreError(f"{core.path}: {what} at index {idx:#x} of log_buf ({log_buf:#x})",
                           "the dump's log is damaged")

    idx, wrapped = first_idx, False
    while idx != next_idx:
        if idx + header_size > buf_len:
            raise damaged("a record header past the buffer's end", idx)
        ts = int.from_bytes(buf[idx + ts_at:idx + ts_at + 8], bo)
        text_len = int.from_bytes(buf[idx + text_len_at:idx + text_len_at + 2], bo)
        yield line(ts, buf[idx + header_size:idx + header_size + text_len])
        size = int.from_bytes(buf[idx + len_at:idx + len_at + 2], bo)
        if size == 0:                                   # the end marker: go on at the start
            if wrapped:
                raise damaged("a second end-of-buffer marker", idx)
            idx, wrapped = 0, True
        else:
            idx += size
            if idx > buf_len - header_size:
                raise damaged("a record", idx)


# -- before Linux 3.5 --------------------------------------------------------------------

def _plain(core: Vmcore) -> Iterator[bytes]:
    log_buf = core.word(core.need("SYMBOL(log_buf)"))
    log_end = core.word(core.need("SYMBOL(log_end)"), 4)
    buf_len = core.word(core.need("SYMBOL(log_buf_len)"), 4)
    core.need("SYMBOL(logged_chars)")
    if not 0 < buf_len < 1 << 31:
        raise VmcoreError(f"{core.path}: log_buf_len is {buf_len}", "the dump's log is damaged")
    buf = core.read(log_buf, buf_len)
    cut = log_end % buf_len
    oldest_first = buf[cut:] + buf[:cut]
    yield oldest_first[buf_len - min(log_end, buf_len):]


# -- the command -------------------------------------------------------------------------

def dmesg(path: str, out: BinaryIO, *, by_header: bool = False) -> None:
    """Write the kernel log of the vmcore at ``path`` to ``out`` (VmcoreError when it cannot)."""
    core = Vmcore.open(path, by_header=by_header)
    for chunk in records(core):
        out.write(chunk)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Print the kernel log of a crashed kernel from its vmcore, "
                               "line for line as kexec-tools' vmcore-dmesg does.")
    parser.add_argument("vmcore", metavar="VMCORE", help="an ELF vmcore: /proc/vmcore, or a saved copy")
    parser.add_argument("--by-header", action="store_true",
                        help="translate addresses through the program headers' p_vaddr (as vmcore-dmesg "
                             "does) instead of through VMCOREINFO")
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    try:
        dmesg(args.vmcore, out, by_header=args.by_header)
        out.flush()
    except VmcoreError as e:
        out.flush()
        print(f"{prog}: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python3 -m kexec_py.vmcore.dmesg"))
