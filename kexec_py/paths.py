"""File names as kexec-py writes them in plans and messages."""

from __future__ import annotations


def path_text(path) -> str:
    """A file's path as pathlib's PurePosixPath writes it (no empty or "." parts, no trailing
    slash), without importing pathlib: plans and messages name files this way."""
    text = str(path)
    root = "//" if text.startswith("//") and not text.startswith("///") else "/" if text.startswith("/") else ""
    return (root + "/".join(part for part in text.split("/") if part and part != ".")) or "."
