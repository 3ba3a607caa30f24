from hypothesis import given, strategies as st

from kexec_py.plan.ranges import Range, merge, subtract

ranges = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 50)).map(lambda t: Range(t[0], t[0] + t[1])),
                  max_size=8)


def points(rs):
    return {a for r in rs for a in range(r.start, r.end)}


@given(ranges, ranges)
def test_subtract_is_set_difference(a, b):
    out = subtract(a, b)
    assert points(out) == points(a) - points(b)
    assert out == merge(out)          # sorted, disjoint, coalesced


@given(ranges)
def test_merge_is_union(a):
    out = merge(a)
    assert points(out) == points(a)
    assert all(x.end < y.start for x, y in zip(out, out[1:]))


def test_inclusive_constructor_and_repr():
    r = Range.from_inclusive(0x1000, 0x1fff)
    assert r.size == 0x1000 and r.last == 0x1fff
    assert repr(r) == "Range[0x1000, 0x2000)"
    assert r.minus(Range(0x1800, 0x1900)) == [Range(0x1000, 0x1800), Range(0x1900, 0x2000)]
