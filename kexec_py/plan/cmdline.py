"""Composing the new kernel's command line, the way kexec-tools does."""

from __future__ import annotations


def remove_param(cmdline: str, name: str) -> str:
    """Drop every ``name`` and ``name=...`` word."""
    return " ".join(w for w in cmdline.split() if w != name and not w.startswith(name + "="))


def compose_cmdline(*, append: str | None, reuse: str | None, crash: bool) -> str:
    """``--reuse-cmdline`` text (BOOT_IMAGE always dropped, crashkernel= too for -p)
    followed by ``--append``/``--command-line`` text."""
    parts = []
    if reuse is not None:
        reused = remove_param(reuse, "BOOT_IMAGE")
        if crash:
            reused = remove_param(reused, "crashkernel")
        parts.append(reused)
    if append:
        parts.append(append.strip())
    return " ".join(p for p in parts if p)
