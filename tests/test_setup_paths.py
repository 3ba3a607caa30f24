"""The README's two commands set up what they need by themselves, in a Python that has
none of kexec-py's dependencies (a fresh virtual environment, on a copy of the tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.guest          # slow: it installs from PyPI, and the guest inputs must be cached


@pytest.fixture
def fresh(tmp_path):
    """A copy of the committed tree and a virtual environment without kexec-py's dependencies."""
    tree = tmp_path / "tree"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python3"
    probe = subprocess.run([str(python), "-c", "import elftools"], capture_output=True)
    assert probe.returncode != 0, "the fresh environment must not have the dependencies already"
    # KEXEC_PY_NO_SYSTEM_CHANGES: the set-up may install into the venv and fill the guest cache,
    # but a test must not install packages or add dpkg architectures on this machine
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", PIP_CACHE_DIR=str(tmp_path / "pip"),
               PYTHONDONTWRITEBYTECODE="1", KEXEC_PY_NO_SYSTEM_CHANGES="1")
    env.pop("PYTHONPATH", None)
    return tree, python, env


def _imports_everything(python: Path, env: dict) -> bool:
    check = "import elftools, cffi, construct, typer, kexec_py.cli"
    return subprocess.run([str(python), "-c", check], env=env, cwd="/").returncode == 0


def test_demo_kdump_sets_itself_up(fresh):
    tree, python, env = fresh
    p = subprocess.run([str(python), str(tree / "scripts" / "demo-kdump"), "--setup-only"], env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "installing kexec-py and its dependencies" in p.stderr and "demo-kdump: ready" in p.stdout
    assert _imports_everything(python, env)


def test_test_all_sets_itself_up(fresh):
    tree, python, env = fresh
    p = subprocess.run(["bash", str(tree / "scripts" / "test-all"), "--setup-only"], env=env,
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "test-all: ready" in p.stdout
    assert _imports_everything(python, env)
