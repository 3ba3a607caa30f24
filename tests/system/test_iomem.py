import pytest

from kexec_py.errors import SnapshotError
from kexec_py.plan.ranges import Range
from kexec_py.system.iomem import parse_iomem

TEXT = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-5ffdffff : System RAM
  1d000000-34ffffff : Crash kernel
  5a200000-5b001d56 : Kernel code
    5a300000-5a3fffff : nested deeper
5ffe0000-5fffffff : Reserved
100000000-17fffffff : System RAM (kmem)
"""


def test_tree_keeps_nesting():
    iomem = parse_iomem(TEXT)
    assert [r.name for r in iomem.roots] == ["Reserved", "System RAM", "System RAM", "Reserved",
                                              "System RAM (kmem)"]
    ram = iomem.roots[2]
    assert [c.name for c in ram.children] == ["Crash kernel", "Kernel code"]
    assert ram.children[1].children[0].depth == 2
    assert iomem.named("Crash kernel") == [Range(0x1D000000, 0x35000000)]


def test_walk_is_file_order():
    """parse_iomem keeps every resource in file order; that is a pre-order walk of the tree."""
    iomem = parse_iomem(TEXT)
    assert [r.name for r in iomem.walk()] == [line.split(" : ")[1] for line in TEXT.splitlines()]
    assert list(iomem.walk()) == [res for root in iomem.roots for res in root.walk()]


def test_system_ram_matches_as_substring():
    ram = parse_iomem(TEXT).containing_name("System RAM")
    assert Range(0x100000000, 0x180000000) in ram
    assert len(ram) == 3


@pytest.mark.parametrize("bad", [
    "garbage\n",
    "0000-zzzz : x\n",
    "00001000-00000fff : backwards\n",
    "   00001000-00001fff : odd indent\n",
    "00000000-00000fff : a\n    00000000-000000ff : jumps two levels\n",
], ids=["garbage", "not-hex", "backwards", "odd-indent", "level-jump"])
def test_bad_lines_name_the_line(bad):
    with pytest.raises(SnapshotError, match=r"/proc/iomem:\d"):
        parse_iomem(bad)


def test_unprivileged_zeroes_are_refused():
    with pytest.raises(SnapshotError, match="run as root"):
        parse_iomem("00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n")
