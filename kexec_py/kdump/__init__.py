"""kdump-py: the kdump tools beyond the kexec drop-in (issue 14).

* ``kexec_py.kdump.crashkernel``: a ``crashkernel=`` value evaluated by the kernel's
  rules for a given amount of RAM, and the size this machine's capture kernel needs.
* ``kexec_py.kdump.doctor``: every check that decides whether a crash here produces a
  readable dump.
* ``kexec_py.kdump.cli``: the ``kdump-py`` command (also ``python3 -m kexec_py.kdump``).

Everything is read through one ``kexec_py.system.view.SystemView``, so each command
works on a snapshot root (``--root``) as well as on ``/``. Nothing here writes to the
system or makes a kexec system call.
"""
