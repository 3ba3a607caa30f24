"""The running kernel's live device tree, read from its directory form.

The kernel shows its unflattened tree as /sys/firmware/devicetree/base
(/proc/device-tree is a symlink to it): one directory per node, one file per
property holding the property's raw (big-endian) value, an empty file for a
property without a value. ``read_device_tree_dir`` turns such a directory into
a ``DeviceTree`` that ``build_dtb`` can flatten, following the rules dtc uses
for its ``-I fs`` input, so that ``dtc -I fs`` and this reader agree:

* every regular file is a property and every directory a child node, hidden
  names (a leading dot) included;
* a ``name`` property equal to the node's name without its unit address
  (``cpu`` for ``cpu@0``, empty for the root) is dropped: the kernel makes one up
  for every node of a version-16+ tree, which has no such property (its node
  names carry it), and dtc deletes it as redundant; a ``name`` that says
  something else is kept (dtc keeps it too, and reports it as an error).

What a directory cannot carry, and what becomes of it:

* order: the kernel lists a directory in its own order, not the tree's.
  Properties are put in name order; child nodes in name order with unit
  addresses compared as numbers (``cpu@2`` before ``cpu@10``), so CPUs and
  memory nodes keep their address order.
* the header's boot CPU id (``boot_cpuid_phys``): the devicetree specification
  makes it the physical id of the boot CPU (the ``reg`` of that CPU's node).
  No file holds it, and for a kexec it is not a fact of the running
  system: the CPU that runs the kexec (or the crash) enters the next kernel,
  which is why kexec-tools' ppc64 purgatory writes the id of the CPU that
  enters it there. It is left None, and ``build_dtb`` refuses the tree until
  the arch sets it.
* the memory reservation block: not shown anywhere in the directory.
  Reservations made in the tree itself stay visible (the ``/reserved-memory``
  node; on OPAL/PowerNV machines the root's ``reserved-ranges`` property,
  which skiboot also copies into the reservation block); the kernel's own
  memblock reservations (debugfs ``memblock/reserved``) mix the boot map with
  the kernel's allocations, and so do arm64's "reserved" ranges in /proc/iomem. So
  ``reservations`` is empty: the arch adds what its next kernel must not touch.

The directory is the live tree, which may differ from the tree the kernel was
booted with (/sys/firmware/fdt): on ppc64 the kernel adds properties of its own
to /chosen (``linux,crashkernel-base`` and the like) and hot-plugged CPUs and
memory appear; the arch decides what the next kernel must not inherit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kexec_py.errors import SnapshotError
from kexec_py.plan.devicetree import DeviceTree, Node

if TYPE_CHECKING:
    from kexec_py.system.view import SystemView


def node_order(name: str) -> tuple:
    """Sort key for sibling nodes: the name, with the unit address's comma-separated
    parts compared as hexadecimal numbers where they are ones."""
    base, _, unit = name.partition("@")
    parts = []
    for part in unit.split(",") if unit else ():
        try:
            parts.append((0, int(part, 16), part))
        except ValueError:
            parts.append((1, 0, part))
    return (base, tuple(parts), name)


def read_device_tree_dir(sys: SystemView, top: str) -> DeviceTree:
    """The tree under the directory ``top`` of ``sys``, every file read through ``sys``."""
    top = "/" + top.strip("/")
    if not sys.path(top).is_dir():
        raise SnapshotError(f"{top} is not a directory",
                            "is /sys mounted, and was the kernel booted with a device tree?")
    return DeviceTree(_read_node(sys, top, ""), reservations=[], boot_cpuid_phys=None)


def _read_node(sys: SystemView, path: str, name: str) -> Node:
    node = Node(name)
    try:
        entries = list(sys.path(path).iterdir())
    except OSError as e:
        raise SnapshotError(f"cannot list {path}: {e.strerror}", "run as root") from None
    files = sorted(e.name for e in entries if e.is_file())
    dirs = sorted((e.name for e in entries if e.is_dir()), key=node_order)
    for prop in files:
        node.props[prop] = sys.read_bytes(f"{path}/{prop}")
    if node.props.get("name") == name.partition("@")[0].encode() + b"\0":
        del node.props["name"]
    node.children = [_read_node(sys, f"{path}/{child}", child) for child in dirs]
    return node
