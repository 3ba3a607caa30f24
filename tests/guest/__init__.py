"""QEMU guest harness: boots Debian's kernel with kexec_py inside (see harness.py)."""
