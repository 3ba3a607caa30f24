"""kexec_file_load (-s) on arm64, through the CLI with the recording backend.

The kernel's arm64 kexec_file loader (arch/arm64/kernel/kexec_image.c) takes
only a raw Image: it checks the "ARM\\x64" magic, refuses image_size 0 and a
foreign byte order or page size, and builds the device tree itself (command
line, initrd, and for a crash kernel elfcorehdr and usable-memory-range). So
whatever file the user gives -- Image, Image.gz, an EFI zboot vmlinuz, a vmlinux
-- the syscall must receive the same Image bytes.
"""

from __future__ import annotations

import gzip
import hashlib

import pytest

from kexec_py.structs import kexec_uapi as K
from tests.arch.test_arm64_plan import FIXTURE
from tests.image import arm64_kernels as ak
from tests.image.test_arm64_image import make_image, make_zboot
from tests.test_cli import kexec_py, records

MiB = 1 << 20
IMAGE = make_image(image_size=24 * MiB, size=1 * MiB)
WRAPS = {
    "Image": lambda d: d,
    "Image.gz": lambda d: gzip.compress(d, mtime=0),
    "vmlinuz.efi": lambda d: make_zboot(gzip.compress(d, mtime=0), b"gzip"),
    "vmlinux": ak.vmlinux_from_image,
    "vmlinux.gz": lambda d: gzip.compress(ak.vmlinux_from_image(d), mtime=0),
}


@pytest.mark.parametrize("name", list(WRAPS))
def test_every_kernel_form_reaches_kexec_file_load_as_the_image(tmp_path, name):
    kernel = tmp_path / name
    kernel.write_bytes(WRAPS[name](IMAGE))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd" * 100)
    rec = tmp_path / "rec.jsonl"
    code, _, err, traced = kexec_py("--arch", "arm64", "-p", "-s", kernel, "--initrd", initrd,
                                    "--append", "console=ttyAMA0", record=rec, root=FIXTURE)
    assert code == 0, err
    assert traced == []
    [call] = records(rec)
    assert call["call"] == "kexec_file_load" and call["arch"] == "arm64"
    assert call["kernel_sha256"] == hashlib.sha256(IMAGE).hexdigest()
    assert call["initrd_sha256"] == hashlib.sha256(initrd.read_bytes()).hexdigest()
    assert call["flags"] == K.KEXEC_FILE_ON_CRASH and call["cmdline"].rstrip("\0") == "console=ttyAMA0"


def test_a_pre_3_17_image_is_refused_before_the_call(tmp_path):
    kernel = tmp_path / "Image"
    kernel.write_bytes(make_image(image_size=0, flags=0, size=1 * MiB))
    rec = tmp_path / "rec.jsonl"
    code, _, err, traced = kexec_py("--arch", "arm64", "-p", "-s", kernel, record=rec, root=FIXTURE)
    assert code != 0 and traced == [] and records(rec) == []
    assert "image_size 0" in err and str(kernel) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_default_mode_falls_back_to_kexec_load_when_the_kernel_has_no_kexec_file_load(tmp_path):
    """Debian's arm64 kernels (CONFIG_KEXEC_FILE unset): ENOSYS, then kexec_load with our purgatory."""
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(ak.vmlinux_from_image(IMAGE))
    rec = tmp_path / "rec.jsonl"
    code, _, err, traced = kexec_py("--arch", "arm64", "-p", kernel, "--append", "console=ttyAMA0",
                                    record=rec, fail="kexec_file_load=ENOSYS", root=FIXTURE)
    assert code == 0, err
    assert traced == []
    assert [c["call"] for c in records(rec)] == ["kexec_file_load", "kexec_load"]
    load = records(rec)[1]
    assert load["flags"] == K.KEXEC_ON_CRASH | K.KEXEC_ARCH_AARCH64
    kernel_seg = [s for s in load["segments"] if s["sha256"] == hashlib.sha256(IMAGE).hexdigest()]
    assert len(kernel_seg) == 1 and kernel_seg[0]["mem"] % (2 * MiB) == 0
