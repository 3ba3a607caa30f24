"""Reading a crashed kernel's memory out of an ELF vmcore (/proc/vmcore in a capture
kernel, or a saved copy): ``core`` opens the file and turns kernel virtual addresses
into file bytes, ``dmesg`` prints the kernel log (``python3 -m kexec_py.vmcore.dmesg``).

Only the standard library, construct and kexec_py.structs are imported, so a capture
initrd needs no more than Python, construct and this package to run it.
"""
