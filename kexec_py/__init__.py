"""kexec_py: load a new or a crash-capture Linux kernel, in Python.

Importing this package is cheap on purpose: the CLI's --help must stay fast,
so nothing here imports construct, pyelftools or cffi.
"""

__version__ = "0.1.0"
