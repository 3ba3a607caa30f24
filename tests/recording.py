"""Run kexec-py's command line with the recording backend in place of the kernel.

    KEXEC_PY_RECORD=FILE [KEXEC_PY_RECORD_FAIL=call=ERRNO,...] python3 -m tests.recording ARGS...

The installed kexec-py honours no such variable: a stray environment variable must
never turn a real load into a recorded one that reports success. Tests that run the
command line as a subprocess use this launcher instead: it installs the recorder
(``kexec_py.submit.backends.RecordingBackend``, a JSON line per call in FILE; the
calls named in KEXEC_PY_RECORD_FAIL fail with those errnos, in turn) and then runs
``kexec_py.cli.main`` with ARGS. Run it behind tests/guard.py like every real-path
subprocess.
"""

from __future__ import annotations

import errno
import os
import sys


def recorder_from_environment():
    """A backend_for() that gives the recorder the environment describes."""
    path = os.environ.get("KEXEC_PY_RECORD")
    if not path:
        sys.exit("tests.recording: set KEXEC_PY_RECORD to the file the calls are recorded in")
    fail: dict[str, list[int]] = {}
    for item in filter(None, os.environ.get("KEXEC_PY_RECORD_FAIL", "").split(",")):
        call, _, name = item.partition("=")
        fail.setdefault(call, []).append(getattr(errno, name))

    def backend_for(arch: str, *, dry_run: bool = False):
        from kexec_py.submit.backends import RecordingBackend
        return None if dry_run else RecordingBackend(arch, fail={k: list(v) for k, v in fail.items()},
                                                     log_path=path)
    return backend_for


def install() -> None:
    from kexec_py.submit import backends
    backends.backend_for = recorder_from_environment()


def main(argv: list[str]) -> None:
    install()
    from kexec_py.cli import main as cli_main
    cli_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
