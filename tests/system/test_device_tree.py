"""SystemView.device_tree(): /sys/firmware/fdt, or the live tree built from /proc/device-tree.

The expected trees come from elsewhere: dtc (Debian's device-tree-compiler), which
reads a /proc/device-tree-style directory itself with ``-I fs``, and the flattened
tree the same kernel showed in /sys/firmware/fdt on the boot the directory was
captured from (tests/fixtures/systems/README.md). dtc is required: without it
these tests fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kexec_py.errors import SnapshotError
from kexec_py.plan.devicetree import DeviceTree, Node, build_dtb, parse_dtb
from kexec_py.system.devicetree_dir import node_order
from kexec_py.system.view import SystemView

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/systems/arm64-qemu-2cpu"
DT_DIR = FIXTURE / "proc/device-tree"


def same_boot_fdt() -> bytes:
    """/sys/firmware/fdt of the boot proc/device-tree was captured from (see the fixtures' README)."""
    sidecar = FIXTURE / "proc-device-tree-boot.fdt"
    return (sidecar if sidecar.exists() else FIXTURE / "sys/firmware/fdt").read_bytes()


def dtc(*args: str, data: bytes | None = None) -> bytes:
    assert shutil.which("dtc"), "dtc is needed (apt-get install device-tree-compiler; scripts/test-all does)"
    return subprocess.run(["dtc", "-q", *args], input=data, capture_output=True, check=True).stdout


def flat(tree: DeviceTree) -> dict[str, dict[str, bytes]]:
    """path -> properties, for comparing trees whatever their node and property order."""
    out: dict[str, dict[str, bytes]] = {}

    def walk(node: Node, path: str) -> None:
        assert path not in out, f"two nodes at {path}"
        out[path] = dict(node.props)
        for child in node.children:
            walk(child, f"{path.rstrip('/')}/{child.name}")
    walk(tree.root, "/")
    return out


def with_boot_cpu(tree: DeviceTree, cpu: int = 0) -> DeviceTree:
    tree.boot_cpuid_phys = cpu
    return tree


# -- the captured directory against dtc and against the same boot's /sys/firmware/fdt --------

def test_the_directory_reads_as_dtc_reads_it():
    live = SystemView(FIXTURE).live_device_tree()
    ours = build_dtb(with_boot_cpu(live))
    assert dtc("-s", "-I", "dtb", "-O", "dts", data=ours) == dtc("-s", "-I", "fs", "-O", "dts", str(DT_DIR))
    # and node for node, property for property, against dtc's own flattening of the directory
    assert flat(live) == flat(parse_dtb(dtc("-I", "fs", "-O", "dtb", str(DT_DIR))))


def test_the_directory_holds_the_boot_tree_in_every_node_and_property():
    live = SystemView(FIXTURE).live_device_tree()
    booted = parse_dtb(same_boot_fdt())
    assert flat(live) == flat(booted)
    assert len(flat(live)) == 58 and sum(map(len, flat(live).values())) == 228
    # what the directory cannot say: the header's boot CPU and the reservation block
    # (QEMU's virt machine reserves nothing there, so nothing is lost on this machine)
    assert (booted.boot_cpuid_phys, live.boot_cpuid_phys) == (0, None)
    assert booted.reservations == live.reservations == []


def test_the_kernels_name_files_are_dropped_and_nothing_else():
    names = sorted(p.relative_to(DT_DIR) for p in DT_DIR.rglob("name"))
    assert len(names) == 58                  # one per node, the root's holding just b"\0"
    assert (DT_DIR / "name").read_bytes() == b"\0"
    assert (DT_DIR / "cpus/cpu@1/name").read_bytes() == b"cpu\0"
    files = sum(1 for p in DT_DIR.rglob("*") if p.is_file())
    live = flat(SystemView(FIXTURE).live_device_tree())
    assert sum(map(len, live.values())) == files - len(names)
    assert not any("name" in props for props in live.values())


def test_property_files_keep_their_exact_bytes():
    live = flat(SystemView(FIXTURE).live_device_tree())
    assert live["/pl061@9030000"]["gpio-controller"] == b""          # an empty file: a property without value
    assert live["/cpus/cpu@1"]["reg"] == b"\0\0\0\x01"
    assert live["/chosen"]["bootargs"] == b"console=ttyAMA0,115200 crashkernel=384M panic=1\0"
    assert live["/memory@40000000"]["reg"] == bytes.fromhex("00000000 40000000 00000000 60000000")


def test_the_boot_fdts_of_the_two_captures_differ_only_in_the_initrd_end():
    """The fixture mixes two boots (README): their flattened trees agree but for the initrd's size."""
    older = flat(parse_dtb((FIXTURE / "sys/firmware/fdt").read_bytes()))
    newer = flat(parse_dtb(same_boot_fdt()))
    diff = {(path, key) for path in older.keys() | newer.keys()
            for key in older.get(path, {}).keys() | newer.get(path, {}).keys()
            if older.get(path, {}).get(key) != newer.get(path, {}).get(key)}
    assert diff <= {("/chosen", "linux,initrd-end")}


# -- where the tree comes from -----------------------------------------------------------

def test_sys_firmware_fdt_comes_first():
    view = SystemView(FIXTURE)
    tree = view.device_tree()
    fdt = (FIXTURE / "sys/firmware/fdt").read_bytes()
    assert tree == parse_dtb(fdt) and tree.boot_cpuid_phys == 0    # the header's, not None
    assert view.device_tree() is not tree                 # a fresh tree each time: callers edit it


def test_the_fdt_wins_over_a_directory_that_says_otherwise(tmp_path):
    shutil.copytree(DT_DIR, tmp_path / "proc/device-tree")
    (tmp_path / "proc/device-tree/chosen/bootargs").write_bytes(b"from the directory\0")
    (tmp_path / "sys/firmware").mkdir(parents=True)
    shutil.copy(FIXTURE / "sys/firmware/fdt", tmp_path / "sys/firmware/fdt")
    view = SystemView(tmp_path)
    assert view.device_tree().root.child("chosen").props["bootargs"].startswith(b"console=")
    assert view.live_device_tree().root.child("chosen").props["bootargs"] == b"from the directory\0"


@pytest.mark.parametrize("where", ["proc/device-tree", "sys/firmware/devicetree/base"])
def test_without_sys_firmware_fdt_the_directory_is_walked(tmp_path, where):
    shutil.copytree(DT_DIR, tmp_path / where)
    tree = SystemView(tmp_path).device_tree()
    assert tree.boot_cpuid_phys is None and tree.reservations == []
    assert flat(tree) == flat(parse_dtb(same_boot_fdt()))


def test_no_device_tree_at_all_is_a_snapshot_error(tmp_path):
    with pytest.raises(SnapshotError, match="no device tree"):
        SystemView(tmp_path).device_tree()
    with pytest.raises(SnapshotError, match="/proc/device-tree is not a directory"):
        SystemView(tmp_path).live_device_tree()


def test_a_damaged_sys_firmware_fdt_is_named(tmp_path):
    (tmp_path / "sys/firmware").mkdir(parents=True)
    (tmp_path / "sys/firmware/fdt").write_bytes(b"\xd0\x0d\xfe\xed" + bytes(36))
    with pytest.raises(Exception, match="/sys/firmware/fdt"):
        SystemView(tmp_path).device_tree()


def test_an_unknown_boot_cpu_must_be_set_before_flattening():
    live = SystemView(FIXTURE).live_device_tree()
    with pytest.raises(ValueError, match="boot_cpuid_phys"):
        build_dtb(live)
    live.boot_cpuid_phys = 8
    assert parse_dtb(build_dtb(live)).boot_cpuid_phys == 8


# -- the directory rules, on a made-up tree, against dtc -I fs ---------------------------

def make_dir(top: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_name_files_hidden_files_and_node_order_as_dtc_has_them(tmp_path):
    top = tmp_path / "proc/device-tree"
    make_dir(top, {
        "name": b"\0",
        "#address-cells": b"\0\0\0\x01",
        ".hidden": b"dot",                           # a property like any other
        "cpus/name": b"cpus\0",
        "cpus/cpu@10/name": b"cpu\0", "cpus/cpu@10/reg": b"\0\0\0\x10",
        "cpus/cpu@2/name": b"cpu\0", "cpus/cpu@2/reg": b"\0\0\0\x02",
        "cpus/cpu@0/name": b"cpu\0", "cpus/cpu@0/reg": b"\0\0\0\0",
        "odd@1,f/name": b"other\0",                  # a name that is not the node's: kept
        "odd@1,f/empty": b"",
    })
    live = SystemView(tmp_path).live_device_tree()
    tree = flat(live)
    assert tree["/"] == {"#address-cells": b"\0\0\0\x01", ".hidden": b"dot"}
    assert tree["/odd@1,f"] == {"empty": b"", "name": b"other\0"}
    assert [c.name for c in live.root.child("cpus").children] == ["cpu@0", "cpu@2", "cpu@10"]
    # dtc -I fs agrees (-f: it reports the odd name as an error, and keeps it)
    theirs = dtc("-f", "-I", "fs", "-O", "dtb", str(top))
    assert flat(live) == flat(parse_dtb(theirs))
    assert dtc("-f", "-s", "-I", "dtb", "-O", "dts", data=build_dtb(with_boot_cpu(live))) == \
        dtc("-f", "-s", "-I", "fs", "-O", "dts", str(top))


def test_unit_addresses_sort_as_numbers():
    names = ["memory@100000000", "memory@f0000000", "memory@0", "memory", "cpu@1,10", "cpu@1,2", "l2-cache@x"]
    assert sorted(names, key=node_order) == ["cpu@1,2", "cpu@1,10", "l2-cache@x", "memory", "memory@0",
                                            "memory@f0000000", "memory@100000000"]
