"""How scripts/capture-snapshot moves guest files: init.sh's kpy_put (base64 and md5 over
the console) read back by the harness, with binary, empty and oddly named property files
as /proc/device-tree has them; and the device tree's directory list."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.guest import harness, snapshot

INIT_SH = Path(harness.__file__).with_name("init.sh")


def kpy_put_function() -> str:
    text = INIT_SH.read_text()
    start = text.index("mark() {")
    end = text.index("\n}\n", text.index("kpy_put() {")) + 3
    return re.sub(r"^(uptime_s|crash_loaded)\(\).*$", "", text[start:end], flags=re.M)


def send(tmp_path: Path, files: dict[str, bytes]) -> harness.Result:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    script = kpy_put_function() + "".join(
        f'kpy_put "/proc/device-tree/x/{name}" "{tmp_path}/{name}"\n' for name in files)
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True, text=True).stdout
    result = harness.Result("transfer", tmp_path / "console.log")
    console = harness._Console(result, time.monotonic(), echo=False)
    for line in out.splitlines(keepends=True):
        console.feed(line.replace("\n", "\r\n"))        # a serial console ends lines with CR LF
    return result


def test_binary_empty_and_odd_names_survive_the_console(tmp_path):
    files = {"#address-cells": b"\0\0\0\x02", "dma-coherent": b"", "reg": bytes(range(256)) * 3,
             ".hidden": b"\n\r\n\0", "name": b"cpu\0"}
    result = send(tmp_path, files)
    assert result.bad_files == []
    assert result.files == {f"/proc/device-tree/x/{k}": v for k, v in files.items()}


def test_a_garbled_line_is_caught_by_the_md5(tmp_path):
    (tmp_path / "reg").write_bytes(bytes(range(200)))
    script = kpy_put_function() + f'kpy_put /proc/device-tree/reg "{tmp_path}/reg"\n'
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True, text=True).stdout
    lines = out.splitlines()
    lines[1] = lines[1][:10] + "AAAA" + lines[1][14:]
    result = harness.Result("transfer", tmp_path / "console.log")
    console = harness._Console(result, time.monotonic(), echo=False)
    for line in lines:
        console.feed(line + "\n")
    assert result.bad_files == ["/proc/device-tree/reg"] and not result.files


def test_device_tree_directories_are_listed_and_an_empty_one_is_refused():
    files = {"/proc/device-tree/name": b"\0", "/proc/device-tree/cpus/cpu@0/reg": b"\0\0\0\0"}
    assert snapshot._device_tree_dirs(".\n./cpus\n./cpus/cpu@0\n", files) == ["", "cpus", "cpus/cpu@0"]
    with pytest.raises(snapshot.SnapshotError, match="/proc/device-tree/empty holds no file"):
        snapshot._device_tree_dirs(".\n./empty\n", files)


def test_the_snapshot_step_sends_the_directory_list_then_every_property_file():
    step = snapshot.SNAPSHOT_STEP
    assert f"kpy_put {snapshot.DT_DIRS} /tmp/dt-dirs" in step
    assert 'kpy_put "/proc/device-tree/${f#./}" "/proc/device-tree/$f"' in step
    assert step.index("find . -type d") < step.index("find . -type f")


def test_a_crash_reservation_shows_in_iomem_or_only_in_the_device_tree():
    """x86 and arm64 show a "Crash kernel" range in /proc/iomem; ppc64 only /chosen's properties."""
    reserved = snapshot.crash_memory_reserved
    assert reserved({"/proc/iomem": b"00001000-5fffffff : System RAM\n  20000000-37ffffff : Crash kernel\n"})
    size = "/proc/device-tree/chosen/linux,crashkernel-size"
    assert reserved({"/proc/iomem": b"00000000-5fffffff : System RAM\n", size: (384 << 20).to_bytes(8, "big")})
    assert not reserved({"/proc/iomem": b"00000000-5fffffff : System RAM\n", size: bytes(8)})
    assert not reserved({"/proc/iomem": b"00000000-5fffffff : System RAM\n"})
