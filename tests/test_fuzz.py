"""A short fuzz round over every parser (scripts/fuzz runs the long one)."""

import gzip
import importlib.resources

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kexec_py.fuzz import TARGETS, run_one
from tests.conftest import SYSTEMS

SMOKE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def seeds(debian_kernel_bytes: bytes) -> dict[str, list[bytes]]:
    purg = importlib.resources.files("kexec_py").joinpath("data/purgatory/x86_64.o").read_bytes()
    iomem = [p.read_bytes() for p in SYSTEMS.glob("*/proc/iomem")]
    head = debian_kernel_bytes[:0x4000]
    kcore = [p.read_bytes() for p in SYSTEMS.glob("x86_64*/proc/kcore")]
    return {"iomem": iomem, "bzimage": [head], "kernel-file": [head, gzip.compress(head)],
            "purgatory": [purg], "kcore": kcore}


def mutated(seed_list):
    """A seed with a few bytes overwritten, inserted or cut off."""
    return st.tuples(st.sampled_from(seed_list), st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)),
                                                          max_size=8), st.integers(0, 1 << 20)).map(_apply)


def _apply(args):
    seed, edits, cut = args
    b = bytearray(seed)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b[:max(1, cut % (len(b) + 1))]) if cut % 3 == 0 else bytes(b)


@pytest.fixture(scope="module")
def seed_table(debian_kernel):
    return seeds(debian_kernel.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_no_uncaught_exception(target, seed_table):
    @SMOKE
    @given(st.one_of(st.binary(max_size=4096), mutated(seed_table[target])))
    def check(data):
        run_one(target, data)
    check()
