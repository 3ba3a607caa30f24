"""The ppc64le snapshot (tests/fixtures/systems/ppc64le-qemu-2cpu) is what it claims to be.

Captured from Debian 12's powerpc64le kernel in qemu-system-ppc64 -M pseries (-m 1536 -smp 2,
crashkernel=384M; tests/fixtures/systems/README.md). ppc64 differs from the other snapshots in
what a loader must read: the page size is 64 KiB, /proc/iomem has no "Crash kernel" range (the
reservation is in the live device tree's /chosen), and the kernel adds properties to the live
tree after boot, so /sys/firmware/fdt (the tree prom_init flattened at boot) lacks them.

The expected values come from elsewhere than the code under test: the guest's own kernel log
(dmesg.txt, "Reserving 384MB of memory at 512MB for crashkernel"), capture.json, the raw bytes
of the property files, and dtc (Debian's device-tree-compiler, required as in test_device_tree).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from kexec_py.system.view import SystemView
from tests.system.test_device_tree import dtc, flat

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/systems/ppc64le-qemu-2cpu"
DT = FIXTURE / "proc/device-tree"
MIB = 1 << 20
# What the kernel adds to the live /chosen after boot (arch/powerpc kexec setup): absent from the fdt.
CHOSEN_ADDED_AFTER_BOOT = {"linux,crashkernel-base", "linux,crashkernel-size", "linux,kernel-end",
                           "linux,memory-limit"}


def params() -> dict:
    return json.loads((FIXTURE / "capture.json").read_text())


def prop_int(rel: str) -> int:
    """A device-tree property file read as one big-endian number (as ppc64 writes them)."""
    return int.from_bytes((DT / rel).read_bytes(), "big")


def reg_ranges(rel: str) -> list[tuple[int, int]]:
    """(start, size) pairs of a reg property under the root's #address-cells/#size-cells."""
    acells, scells = prop_int("#address-cells"), prop_int("#size-cells")
    data = (DT / rel).read_bytes()
    step = 4 * (acells + scells)
    assert len(data) % step == 0, f"{rel}: {len(data)} bytes is not a whole number of entries"
    return [(int.from_bytes(data[i:i + 4 * acells], "big"), int.from_bytes(data[i + 4 * acells:i + step], "big"))
            for i in range(0, len(data), step)]


def memory_nodes() -> list[tuple[int, int]]:
    return sorted(r for node in DT.glob("memory@*") for r in reg_ranges(f"{node.name}/reg"))


def dmesg_crash_reservation() -> tuple[int, int]:
    """(base, size) from the guest kernel's own message."""
    text = (FIXTURE / "dmesg.txt").read_text()
    (m,) = re.findall(r"Reserving (\d+)MB of memory at (\d+)MB for crashkernel", text)
    return int(m[1]) * MIB, int(m[0]) * MIB


# -- what the snapshot was captured from -------------------------------------------------------

def test_captured_from_the_ppc64le_guest():
    assert params() == {"arch": "ppc64le", "smp": 2, "mem": 1536, "crashkernel": "384M", "append": ""}
    assert (FIXTURE / "proc/cmdline").read_text().split() == ["console=hvc0", "crashkernel=384M", "panic=1"]
    assert (DT / "compatible").read_bytes() == b"qemu,pseries\0"
    vmcoreinfo = (FIXTURE / "proc/kcore").read_bytes()
    assert re.search(rb"OSRELEASE=6\.1\.0-\d+-powerpc64le\n", vmcoreinfo)


def test_the_page_size_is_64k():
    assert SystemView(FIXTURE).page_size == 65536
    assert b"\nPAGESIZE=65536\n" in (FIXTURE / "proc/kcore").read_bytes()      # VMCOREINFO agrees


def test_two_cpus_each_with_a_crash_note():
    sysview = SystemView(FIXTURE)
    assert sysview.possible_cpus() == [0, 1]
    assert [n.cpu for n in sysview.crash_notes()] == [0, 1]
    assert sorted(p.name for p in (DT / "cpus").iterdir() if p.is_dir()) == ["PowerPC,POWER9@0", "PowerPC,POWER9@1"]


# -- memory and the crash reservation ------------------------------------------------------------

def test_ram_is_in_the_memory_nodes():
    """SLOF splits the 1536 MiB at 1 GiB: memory@0 and memory@40000000. No hotpluggable memory
    was configured (no maxmem), so there is no ibm,dynamic-reconfiguration-memory node."""
    ram = memory_nodes()
    assert ram == [(0, 1024 * MIB), (1024 * MIB, 512 * MIB)]
    assert sum(size for _, size in ram) == params()["mem"] * MIB
    assert not (DT / "ibm,dynamic-reconfiguration-memory").exists()
    iomem_ram = [(r.start, r.end) for r in SystemView(FIXTURE).iomem.named("System RAM")]
    assert iomem_ram == [(0, params()["mem"] * MIB)]


def test_the_crash_reservation_is_only_in_the_device_tree():
    base, size = prop_int("chosen/linux,crashkernel-base"), prop_int("chosen/linux,crashkernel-size")
    assert len((DT / "chosen/linux,crashkernel-base").read_bytes()) == 8
    assert (base, size) == dmesg_crash_reservation() == (512 * MIB, 384 * MIB)
    assert size == SystemView(FIXTURE).kexec_crash_size()
    assert SystemView(FIXTURE).iomem.named("Crash kernel") == []   # no "Crash kernel" in /proc/iomem
    (region,) = SystemView(FIXTURE).crash_regions()                 # so it is read from /chosen
    assert (region.start, region.size) == (base, size)
    assert "Crash kernel" not in (FIXTURE / "proc/iomem").read_text()
    assert any(start <= base and base + size <= start + length for start, length in memory_nodes())


def test_rtas_lies_inside_the_crash_region():
    """prom_init put RTAS (firmware the kernel calls) just below 768 MiB, and the kernel reserved
    the crash memory at 512 MiB over it: the capture kernel's segments and its usable memory
    must leave RTAS's range alone. The boot FDT's reserve map holds it, rounded to 64 KiB."""
    base, size = prop_int("rtas/linux,rtas-base"), prop_int("rtas/rtas-size")
    assert (base, size) == (0x2FFF0000, 0x83C)
    crash_base = prop_int("chosen/linux,crashkernel-base")
    assert crash_base <= base and base + size <= crash_base + prop_int("chosen/linux,crashkernel-size")
    assert (base, 0x10000) in fdt_reservations()


# -- the two device trees ------------------------------------------------------------------------

def fdt_header() -> dict[str, int]:
    names = ("magic", "totalsize", "off_dt_struct", "off_dt_strings", "off_mem_rsvmap", "version",
             "last_comp_version", "boot_cpuid_phys", "size_dt_strings", "size_dt_struct")
    return dict(zip(names, struct.unpack_from(">10I", (FIXTURE / "sys/firmware/fdt").read_bytes())))


def fdt_reservations() -> list[tuple[int, int]]:
    data, out = (FIXTURE / "sys/firmware/fdt").read_bytes(), []
    offset = fdt_header()["off_mem_rsvmap"]
    while (entry := struct.unpack_from(">QQ", data, offset)) != (0, 0):
        out.append(entry)
        offset += 16
    return out


def test_the_boot_fdt_is_a_version_16_tree_with_rtas_and_the_initrd_reserved():
    """prom_init flattens the firmware's tree as a version-16 FDT: no size_dt_struct (0 here,
    a version-17 field). Its reserve map holds the initrd and RTAS, rounded to 64 KiB."""
    header = fdt_header()
    assert (header["magic"], header["version"], header["size_dt_struct"]) == (0xD00DFEED, 16, 0)
    assert header["boot_cpuid_phys"] == 0
    rtas = prop_int("rtas/linux,rtas-base")
    initrd = prop_int("chosen/linux,initrd-start")
    initrd_end = prop_int("chosen/linux,initrd-end")
    assert fdt_reservations() == [(initrd, (initrd_end - initrd + 0xFFFF) & ~0xFFFF), (rtas, 0x10000)]


def test_the_boot_fdt_is_the_live_tree_without_what_the_kernel_added_later():
    """dtc's reading of sys/firmware/fdt and of the directory: the same nodes and properties,
    except the /chosen properties the kernel adds after boot (the crash reservation among them)."""
    boot = dtc("-I", "dtb", "-O", "dts", "-s", str(FIXTURE / "sys/firmware/fdt")).decode()
    live = dtc("-I", "fs", "-O", "dts", "-s", str(DT)).decode()
    live = "\n".join(line for line in live.splitlines() if not re.match(r"\s*name = ", line))
    boot = "\n".join(line for line in boot.splitlines() if not line.startswith("/memreserve/"))
    added = [line.strip() for line in live.splitlines() if line not in boot.splitlines()]
    assert sorted(line.split(" = ")[0] for line in added) == sorted(CHOSEN_ADDED_AFTER_BOOT)
    assert not [line for line in boot.splitlines() if line not in live.splitlines()]


def test_the_live_device_tree_builds():
    tree = SystemView(FIXTURE).live_device_tree()
    nodes = flat(tree)
    assert CHOSEN_ADDED_AFTER_BOOT <= set(nodes["/chosen"])
    assert {"/memory@0", "/memory@40000000", "/rtas", "/cpus/PowerPC,POWER9@0"} <= set(nodes)
    assert nodes["/rtas"]["linux,rtas-base"] == (DT / "rtas/linux,rtas-base").read_bytes()
    assert tree.cells() == (2, 2)


def test_device_tree_builds_from_the_boot_fdt():
    """SystemView.device_tree() prefers /sys/firmware/fdt, which this kernel does show: the boot
    tree, with its header's boot CPU and reserve map, but without the crash reservation."""
    tree = SystemView(FIXTURE).device_tree()
    assert tree.boot_cpuid_phys == 0
    assert tree.reservations == fdt_reservations()
    live = flat(SystemView(FIXTURE).live_device_tree())
    for node in live.values():
        node.pop("name", None)
    boot = flat(tree)
    assert set(boot) == set(live)
    assert set(live["/chosen"]) - set(boot["/chosen"]) == CHOSEN_ADDED_AFTER_BOOT
    assert {path: props for path, props in boot.items() if path != "/chosen"} == \
        {path: props for path, props in live.items() if path != "/chosen"}
