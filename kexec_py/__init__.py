"""kexec_py: load a new or a crash-capture Linux kernel, in Python.

Importing this package is cheap on purpose: the CLI's --help must stay fast,
so nothing here imports construct, pyelftools or cffi.
"""

__version__ = "0.1.0"

# The kexec-tools release whose command line (options, meanings, exit codes) kexec-py
# follows. --version leads with it, in kexec-tools' own "kexec-tools X.Y.Z" shape that
# scripts match to decide whether the installed kexec is new enough (some replace one
# they think too old), and names kexec-py right after, so nobody mistakes it for kexec-tools.
KEXEC_TOOLS_INTERFACE = "2.0.32"


def version_line() -> str:
    return f"kexec-tools-compatible {KEXEC_TOOLS_INTERFACE} (kexec-py {__version__})"
