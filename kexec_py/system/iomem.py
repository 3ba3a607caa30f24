"""/proc/iomem as a tree of resources.

Each line is ``start-last : name`` with two spaces of indentation per nesting
level. The nesting matters ("Crash kernel" and "Kernel code" sit inside a
"System RAM" entry), so it is kept.

A machine with hotplugged memory can list 100,000 ranges, so parsing is one
regular-expression pass over the whole text and one loop over its matches,
linear in the number of lines, and lookups go through the resources in file
order (kept while parsing) rather than walking the tree.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Iterator

from kexec_py.errors import SnapshotError
from kexec_py.plan.ranges import Range, trusted_range
from kexec_py.record import REQUIRED, Record

_LINE = r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$"     # compiled by re.match when first used
# Every line at once: a resource line fills groups 1-4; any other non-blank line, group 5.
_LINES = re.compile(r"^(?:( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)|(.*\S.*))$", re.MULTILINE)
# Line breaks str.splitlines() knows besides \n: with any of them, the line-by-line parser runs.
_OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


# range: Range, name: str, depth: int, children: tuple[Resource, ...]. A collections.namedtuple,
# not typing.NamedTuple: every command imports this module, and not typing (issue 13).
class Resource(namedtuple("Resource", ("range", "name", "depth", "children"), defaults=((),))):
    __slots__ = ()

    def walk(self) -> Iterator["Resource"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def __repr__(self) -> str:
        return f"<Resource {self.name!r} [{self.range.start:#x}-{self.range.last:#x}]>"


class IoMem(Record):
    _defaults = dict(
        roots=REQUIRED,             # tuple[Resource, ...]
        # every resource in file order (a pre-order walk of ``roots``), kept by parse_iomem
        flat=None,
    )
    __slots__ = tuple(_defaults)
    _hidden = _uncompared = ("flat",)

    def walk(self) -> Iterator[Resource]:
        if self.flat is not None:
            return iter(self.flat)
        return (res for root in self.roots for res in root.walk())

    def named(self, name: str) -> list[Range]:
        """Ranges of every resource, at any depth, whose name is exactly ``name``."""
        return [r.range for r in self.walk() if r.name == name]

    def containing_name(self, text: str) -> list[Range]:
        """Ranges whose name contains ``text`` ("System RAM (kmem)" counts as RAM)."""
        return [r.range for r in self.walk() if text in r.name]


def parse_iomem(text: str, *, source: str = "/proc/iomem") -> IoMem:
    """Parse the text of /proc/iomem. Raises SnapshotError naming the bad line.

    Each resource is built when the next line at its depth or above closes it (its
    children are known then) and takes its place in ``flat`` where its line was."""
    if _OTHER_BREAKS.search(text):
        entries = _entries_by_line(text, source)
    else:
        entries = _LINES.findall(text)
    stack: list[tuple[int, list, Range, str, int]] = []   # (depth, children, range, name, index in flat)
    roots: list[Resource] = []
    flat: list[Resource | None] = []

    def close_to(depth: int) -> None:
        """Build every open resource at ``depth`` or deeper: the lines after it are not its children."""
        while stack and stack[-1][0] >= depth:
            d, kids, rng, name, at = stack.pop()
            res = Resource(rng, name, d, tuple(kids))
            flat[at] = res
            (stack[-1][1] if stack else roots).append(res)

    for indent, start, last, name, bad in entries:
        depth = len(indent) >> 1
        top = stack[-1][0] if stack else -1
        start_i, end_i = int(start or "0", 16), int(last or "0", 16) + 1
        if bad or len(indent) % 2 or depth > top + 1 or end_i <= start_i:
            _fail(text, source)
        if depth == top:            # the usual case: only the previous line, a sibling, ends here
            d, kids, rng, nm, at = stack.pop()
            flat[at] = res = Resource(rng, nm, d, tuple(kids))
            (stack[-1][1] if stack else roots).append(res)
        elif depth < top:
            close_to(depth)
        stack.append((depth, [], trusted_range(start_i, end_i), name.strip(), len(flat)))
        flat.append(None)
    close_to(0)
    iomem = IoMem(tuple(roots), tuple(flat))
    if roots and all(r.range.start == 0 and r.range.end <= 1 for r in flat):
        raise SnapshotError(f"{source}: every address reads as zero",
                            "/proc/iomem hides addresses from non-root users: run as root")
    return iomem


def _fail(text: str, source: str):
    """Raise the SnapshotError that names the first bad line."""
    _entries_by_line(text, source)
    raise SnapshotError(f"{source}: cannot parse it", "is this a real /proc/iomem, read as root?")


def _entries_by_line(text: str, source: str) -> list[tuple[str, str, str, str, str]]:
    """The entries line by line (str.splitlines' idea of a line), checked: the first bad
    line raises SnapshotError naming it."""
    out = []
    depth = -1
    for lineno, line in enumerate(text.splitlines(), 1):
        m = re.match(_LINE, line)
        if m is None:
            if not line.strip():
                continue
            raise SnapshotError(f"{source}:{lineno}: cannot parse {line.strip()[:60]!r}",
                                "is this a real /proc/iomem, read as root?")
        indent, start, last, name = m.groups()
        if len(indent) % 2:
            raise SnapshotError(f"{source}:{lineno}: odd indentation in {line.strip()[:60]!r}")
        if len(indent) // 2 > depth + 1:
            raise SnapshotError(f"{source}:{lineno}: nesting jumps a level")
        depth = len(indent) // 2
        if int(last, 16) < int(start, 16):
            raise SnapshotError(f"{source}:{lineno}: range ends before it starts")
        out.append((indent, start, last, name, ""))
    return out
