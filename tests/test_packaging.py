"""What a distribution packager gets: a wheel with the purgatories and the kexec-py command."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_purgatories_and_the_command(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("kexec_py-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if "/data/purgatory/" in n}
    built = {p.name for pattern in ("*.o", "*.json") for p in (ROOT / "kexec_py/data/purgatory").glob(pattern)}
    assert any(n.endswith(".o") for n in built) and shipped == built     # each object and its parse
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "kexec-py = kexec_py.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "kdump-py = kexec_py.kdump.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
