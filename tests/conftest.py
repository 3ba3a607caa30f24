"""Shared fixtures: system snapshots and the real Debian kernel the guest tests boot."""

from __future__ import annotations

from pathlib import Path

import pytest

SYSTEMS = Path(__file__).parent / "fixtures" / "systems"


def system_dirs(prefix: str) -> list[Path]:
    found = sorted(p for p in SYSTEMS.glob(f"{prefix}*") if (p / "proc" / "iomem").exists())
    assert found, f"no system fixtures named {prefix}* under {SYSTEMS}"
    return found


@pytest.fixture(scope="session")
def debian_kernel() -> Path:
    """The Debian cloud amd64 kernel (fetched into the cache on first use; fails if it cannot be)."""
    from tests.guest.fetch import fetch
    return fetch("x86_64").kernel
