"""The device tree reader/writer against dtc (Debian's device-tree-compiler), and the
/chosen changes a kexec makes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kexec_py.errors import CorruptImage, UsageError
from kexec_py.plan.devicetree import ChosenSpec, build_dtb, kexec_chosen, parse_dtb
from kexec_py.plan.ranges import Range
from tests.conftest import require_tool

FIXTURE_FDT = Path(__file__).resolve().parents[1] / "fixtures/systems/arm64-qemu-2cpu/sys/firmware/fdt"
@pytest.fixture
def dtc_tool():
    return require_tool("dtc", "device-tree-compiler")


needs_dtc = pytest.mark.usefixtures("dtc_tool")

DTS = """/dts-v1/;
/memreserve/ 0x48000000 0x2127000;
/memreserve/ 0x80000000 0x1000;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    compatible = "linux,dummy-virt";
    model = "test";
    memory@40000000 { device_type = "memory"; reg = <0 0x40000000 0 0x60000000>; };
    pl011@9000000 { compatible = "arm,pl011", "arm,primecell"; reg = <0 0x9000000 0 0x1000>; };
    empty-node { };
    chosen {
        bootargs = "console=ttyAMA0 crashkernel=384M";
        linux,initrd-start = <0x48000000>;
        linux,initrd-end = <0x4a127000>;
        kaslr-seed = <0 0>;
        linux,elfcorehdr = <0 0x1000 0 0x400>;
        device_type = "type";
    };
};
"""


def dtc(args: list[str], data: bytes) -> bytes:
    return subprocess.run(["dtc", "-q", *args], input=data, capture_output=True, check=True).stdout


def fixed_random(n: int) -> bytes:
    return bytes([0xA5]) * n


@needs_dtc
def test_dtc_output_round_trips_byte_for_byte():
    blob = dtc(["-I", "dts", "-O", "dtb"], DTS.encode())
    tree = parse_dtb(blob)
    assert tree.reservations == [(0x48000000, 0x2127000), (0x80000000, 0x1000)]
    assert build_dtb(tree) == blob


@needs_dtc
def test_the_qemu_tree_survives_a_round_trip_through_dtc():
    ours = build_dtb(parse_dtb(FIXTURE_FDT.read_bytes()))
    assert dtc(["-I", "dtb", "-O", "dts"], ours) == dtc(["-I", "dtb", "-O", "dts"], FIXTURE_FDT.read_bytes())
    assert build_dtb(parse_dtb(dtc(["-I", "dtb", "-O", "dtb"], ours))) == ours


@needs_dtc
def test_kexec_chosen_for_a_capture_kernel_as_dtc_reads_it():
    tree = parse_dtb(dtc(["-I", "dts", "-O", "dtb"], DTS.encode()))
    kexec_chosen(tree, ChosenSpec(cmdline="console=ttyAMA0 irqpoll", initrd=Range(0x9000_0000, 0x9012_3456),
                                  elfcorehdr=Range(0x9a3f_e000, 0x9a3f_f000),
                                  usable=(Range(0x1_8000_0000, 0x1_9000_0000), Range(0x8240_0000, 0x9a40_0000)),
                                  random=fixed_random))
    text = dtc(["-I", "dtb", "-O", "dts"], build_dtb(tree)).decode()
    assert 'bootargs = "console=ttyAMA0 irqpoll";' in text
    assert "linux,initrd-start = <0x00 0x90000000>;" in text
    assert "linux,initrd-end = <0x00 0x90123456>;" in text
    assert "linux,elfcorehdr = <0x00 0x9a3fe000 0x00 0x1000>;" in text
    assert ("linux,usable-memory-range = <0x01 0x80000000 0x00 0x10000000 "
            "0x00 0x82400000 0x00 0x18000000>;") in text
    assert "kaslr-seed = <0xa5a5a5a5 0xa5a5a5a5>;" in text
    assert "rng-seed = " in text
    assert "0x0000000048000000" not in text        # the old initrd's reservation is gone
    assert "/memreserve/\t0x0000000080000000 0x0000000000001000;" in text
    assert 'device_type = "type";' in text


def test_a_plain_kexec_drops_the_capture_properties_and_the_old_initrd():
    tree = parse_dtb(FIXTURE_FDT.read_bytes())
    kexec_chosen(tree, ChosenSpec(cmdline="", random=fixed_random))
    chosen = parse_dtb(build_dtb(tree)).root.child("chosen")
    assert "bootargs" not in chosen.props
    assert not {"linux,initrd-start", "linux,initrd-end", "linux,elfcorehdr"} & set(chosen.props)
    assert chosen.props["kaslr-seed"] == bytes([0xA5]) * 8
    assert chosen.props["stdout-path"] == b"/pl011@9000000\0"


def test_values_that_do_not_fit_one_cell_are_refused():
    tree = parse_dtb(FIXTURE_FDT.read_bytes())
    tree.root.props["#address-cells"] = (1).to_bytes(4, "big")
    with pytest.raises(UsageError, match="does not fit"):
        kexec_chosen(tree, ChosenSpec(cmdline="x", elfcorehdr=Range(0x1_0000_0000, 0x1_0000_1000)))


@pytest.mark.parametrize("blob", [b"", b"\xd0\x0d\xfe\xed" + bytes(36), b"not a dtb" * 10])
def test_garbage_is_a_corrupt_image(blob):
    with pytest.raises(CorruptImage):
        parse_dtb(blob, what="x.dtb")


def test_a_truncated_structure_block_is_reported():
    good = FIXTURE_FDT.read_bytes()
    with pytest.raises(CorruptImage, match="x.dtb"):
        parse_dtb(good[:200] + bytes(len(good) - 200), what="x.dtb")
