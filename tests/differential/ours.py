"""Run kexec-py's command line with the recording backend, and also write the
segments it hands that backend in capture.c's format, so facts.py reads both
programs' loads the same way.

    KEXEC_PY_RECORD=DIR/record.jsonl python3 -m tests.differential.ours DIR -- ARGS...

The recording backend (kexec_py/submit/backends.py) issues no system call; its
JSON log carries each segment's SHA-256, which the test checks against the
dumped bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def install_dumper(out: Path) -> None:
    from kexec_py.submit import backends

    record = backends.RecordingBackend.kexec_load
    record_file = backends.RecordingBackend.kexec_file_load
    counter = iter(range(1 << 30))

    def log(line: str) -> None:
        with open(out / "calls.txt", "a") as f:
            f.write(line + "\n")

    def kexec_load(self, entry, segments, flags):
        n = next(counter)
        log(f"kexec_load n={n} entry={entry:#x} nr_segments={len(segments)} flags={flags:#x}")
        with open(out / f"{n}.segments.txt", "w") as f:
            for i, (buf, mem, memsz) in enumerate(segments):
                f.write(f"{mem:#x} {memsz:#x} {len(buf):#x}\n")
                (out / f"{n}.seg-{i}.bin").write_bytes(bytes(buf))
        return record(self, entry, segments, flags)

    def kexec_file_load(self, kernel_fd, initrd_fd, cmdline, flags):
        n = next(counter)
        log(f"kexec_file_load n={n} kernel_fd={kernel_fd} initrd_fd={initrd_fd} "
            f"cmdline_len={len(cmdline)} flags={flags:#x}")
        (out / f"{n}.cmdline.bin").write_bytes(bytes(cmdline))
        for fd, what in ((kernel_fd, "kernel"), (initrd_fd, "initrd")):
            if fd >= 0:
                with open(out / f"{n}.{what}.bin", "wb") as f:
                    offset = 0
                    while chunk := os.pread(fd, 1 << 20, offset):
                        f.write(chunk)
                        offset += len(chunk)
        return record_file(self, kernel_fd, initrd_fd, cmdline, flags)

    backends.RecordingBackend.kexec_load = kexec_load
    backends.RecordingBackend.kexec_file_load = kexec_file_load


def main(argv: list[str]) -> None:
    out, sep, *args = argv
    if sep != "--":
        sys.exit("usage: python3 -m tests.differential.ours DIR -- KEXEC_PY_ARGS...")
    if not os.environ.get("KEXEC_PY_RECORD"):
        sys.exit("tests.differential.ours: set KEXEC_PY_RECORD (it must never issue a real syscall)")
    install_dumper(Path(out))
    from tests.recording import main as recorded_main
    recorded_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
