"""/proc/iomem as a tree of resources.

Each line is ``start-last : name`` with two spaces of indentation per nesting
level. The nesting matters ("Crash kernel" and "Kernel code" sit inside a
"System RAM" entry), so it is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

from kexec_py.errors import SnapshotError
from kexec_py.plan.ranges import Range

_LINE = re.compile(r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")


@dataclass(frozen=True, slots=True)
class Resource:
    range: Range
    name: str
    depth: int
    children: tuple["Resource", ...] = field(default=())

    def walk(self) -> Iterator["Resource"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def __repr__(self) -> str:
        return f"<Resource {self.name!r} [{self.range.start:#x}-{self.range.last:#x}]>"


@dataclass(frozen=True, slots=True)
class IoMem:
    roots: tuple[Resource, ...]

    def walk(self) -> Iterator[Resource]:
        for root in self.roots:
            yield from root.walk()

    def named(self, name: str) -> list[Range]:
        """Ranges of every resource, at any depth, whose name is exactly ``name``."""
        return [r.range for r in self.walk() if r.name == name]

    def containing_name(self, text: str) -> list[Range]:
        """Ranges whose name contains ``text`` ("System RAM (kmem)" counts as RAM)."""
        return [r.range for r in self.walk() if text in r.name]


def parse_iomem(text: str, *, source: str = "/proc/iomem") -> IoMem:
    """Parse the text of /proc/iomem. Raises SnapshotError naming the bad line."""
    stack: list[tuple[int, list, Range, str]] = []   # (depth, children, range, name)
    roots: list[Resource] = []

    def close_to(depth: int) -> None:
        while stack and stack[-1][0] >= depth:
            d, kids, rng, name = stack.pop()
            res = Resource(rng, name, d, tuple(kids))
            (stack[-1][1] if stack else roots).append(res)

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise SnapshotError(f"{source}:{lineno}: cannot parse {line.strip()[:60]!r}",
                                "is this a real /proc/iomem, read as root?")
        indent, start, last, name = m.groups()
        if len(indent) % 2:
            raise SnapshotError(f"{source}:{lineno}: odd indentation in {line.strip()[:60]!r}")
        depth = len(indent) // 2
        if depth > (stack[-1][0] + 1 if stack else 0):
            raise SnapshotError(f"{source}:{lineno}: nesting jumps a level")
        start_i, last_i = int(start, 16), int(last, 16)
        if last_i < start_i:
            raise SnapshotError(f"{source}:{lineno}: range ends before it starts")
        close_to(depth)
        stack.append((depth, [], Range.from_inclusive(start_i, last_i), name.strip()))
    close_to(0)
    iomem = IoMem(tuple(roots))
    if roots and all(r.range.start == 0 and r.range.end <= 1 for r in iomem.walk()):
        raise SnapshotError(f"{source}: every address reads as zero",
                            "/proc/iomem hides addresses from non-root users: run as root")
    return iomem
