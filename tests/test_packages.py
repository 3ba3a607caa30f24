"""The distribution packages, built as a distribution builds them.

The .deb: the repository's tracked files are copied to a temporary directory and
``dpkg-buildpackage -us -uc -b`` runs there (debian/: debhelper, dh-python, pybuild with
pybuild-plugin-pyproject), with Debian's own python3 first on PATH, as on a build daemon,
and behind the syscall guard (the build's smoke test runs kexec-py). The .deb's files,
links and relations are then checked with ``dpkg-deb``, and the command is run from a
``dpkg-deb -x`` root with Debian's python3 and Debian's python3-typer & co.

The RPM spec: ``rpmspec -P`` (Debian's rpm package) must expand it, with the relations
Fedora's kdump-utils needs.

What these need (debhelper, dh-python, pybuild-plugin-pyproject, python3-typer,
python3-pyelftools, python3-cffi, python3-construct, rpm, zsh, fish) scripts/test-all
installs; a missing tool fails the test, naming it. About 15 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kexec_py import KEXEC_TOOLS_INTERFACE, __version__
from kexec_py.help_text import HELP_TEXT
from kexec_py.options import OPTIONS
from tests import guard

ROOT = Path(__file__).resolve().parent.parent
DEB_PYTHON = "/usr/bin/python3"                     # the package's #! interpreter
# a build daemon's PATH: Debian's python3 and its modules, not a developer's pyenv or venv
BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
SITE = "usr/lib/python3/dist-packages"


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=BUILD_ENV["PATH"]) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: scripts/test-all installs the package build tools")


def _tracked_tree(dest: Path) -> Path:
    """The repository's tracked files (their working-tree content) under dest/kexec-py."""
    src = dest / "kexec-py"
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for name in filter(None, names):
        path = ROOT / name
        if path.is_symlink() or path.is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name, follow_symlinks=False)
    return src


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    _need("dpkg-buildpackage", "dh", "pybuild", "dpkg-deb", "python3")
    work = tmp_path_factory.mktemp("deb")
    src = _tracked_tree(work)
    proc = subprocess.run(guard.guarded(["dpkg-buildpackage", "-us", "-uc", "-b"]), cwd=src, env=BUILD_ENV,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"dpkg-buildpackage failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    # the build's smoke test ran the built tree with Debian's typer
    assert f"kexec-tools-compatible {KEXEC_TOOLS_INTERFACE} (kexec-py {__version__})" in proc.stdout
    (package,) = work.glob("kexec-py_*_all.deb")
    return package


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def _relations(text: str) -> dict[str, str]:
    """'a (>= 1), b' -> {'a': '>= 1', 'b': ''} (alternatives and arch qualifiers kept as they are)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\S+)(?:\s*\((.*)\))?", part)
        out[m.group(1)] = (m.group(2) or "").strip()
    return out


def test_deb_version_and_relations(deb):
    """kdump-tools' unversioned Depends: kexec-tools is met by the versioned Provides (the
    kexec-tools interface --version names); kexec-tools itself is removed (Conflicts/Replaces:
    both ship the kexec command); the Python modules come from Debian's packages."""
    assert _field(deb, "Package") == "kexec-py"
    assert _field(deb, "Version") == __version__
    assert _field(deb, "Architecture") == "all"
    assert _relations(_field(deb, "Provides")) == {"kexec-tools": f"= 1:{KEXEC_TOOLS_INTERFACE}"}
    assert _relations(_field(deb, "Conflicts")) == {"kexec-tools": ""}
    assert _relations(_field(deb, "Replaces")) == {"kexec-tools": ""}
    depends = _relations(_field(deb, "Depends"))
    for package in ("python3-typer", "python3-pyelftools", "python3-construct", "python3:any"):
        assert package in depends, depends
    assert any(p.startswith("python3-cffi-backend") for p in depends), depends
    assert depends["python3-typer"] == ""           # bookworm's 0.7.0 (debian/py3dist-overrides)
    assert "makedumpfile" in _relations(_field(deb, "Recommends"))


def test_deb_contents(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in listing.splitlines():
        mode, *_, path = line.split(None, 5)
        path, _, target = path.partition(" -> ")
        entries[path.removeprefix(".")] = (mode, target)
    assert entries["/usr/sbin/kexec-py"][0] == "-rwxr-xr-x"
    assert entries["/usr/sbin/kdump-py"][0] == "-rwxr-xr-x"
    assert entries["/usr/sbin/kexec"] == ("lrwxrwxrwx", "kexec-py")
    assert "/usr/bin/kexec-py" not in entries and "/sbin/kexec" not in entries    # usrmerge: /sbin -> usr/sbin
    assert entries["/usr/share/man/man8/kexec-py.8.gz"][0].startswith("-")
    assert entries["/usr/share/man/man8/kexec.8.gz"] == ("lrwxrwxrwx", "kexec-py.8.gz")
    assert entries["/usr/share/bash-completion/completions/kexec"][0].startswith("-")
    assert entries["/usr/share/bash-completion/completions/kexec-py"] == ("lrwxrwxrwx", "kexec")
    for path in ("/usr/share/zsh/vendor-completions/_kexec", "/usr/share/fish/vendor_completions.d/kexec.fish",
                 "/usr/share/fish/vendor_completions.d/kexec-py.fish",
                 f"/{SITE}/kexec_py/cli.py", f"/{SITE}/kexec_py-{__version__}.dist-info/METADATA"):
        assert path in entries, path
    assert {"/usr/share/doc/kexec-py/README.Debian", "/usr/share/doc/kexec-py/README.Debian.gz"} & set(entries)
    shipped = {Path(p).name for p in entries if f"/{SITE}/kexec_py/data/purgatory/" in p and not p.endswith("/")}
    built = {p.name for p in (ROOT / "kexec_py/data/purgatory").iterdir() if p.suffix in (".o", ".json")}
    assert built and shipped == built
    assert not [p for p in entries if "/tests/" in p or p.endswith(".pyc")]


def _debian_env(root: Path) -> dict[str, str]:
    """Modules from the unpacked root, then Debian's python3-* packages only: with ``python3 -S``
    neither /usr/local (where pip may have put a newer typer) nor a user site is on the path."""
    return {**BUILD_ENV, "PYTHONPATH": f"{root / SITE}:/{SITE}", "COLUMNS": "80", "PYTHONDONTWRITEBYTECODE": "1"}


def _run_installed(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The unpacked /usr/sbin/kexec, run by its #! interpreter (Debian's python3), behind the guard."""
    return subprocess.run(guard.guarded([DEB_PYTHON, "-S", str(root / "usr/sbin/kexec"), *args]),
                          env=_debian_env(root), cwd=root, capture_output=True, text=True)


def test_installed_command_runs(unpacked):
    assert (unpacked / "usr/sbin/kexec-py").read_text().startswith(f"#!{DEB_PYTHON}\n")
    out = _run_installed(unpacked, "--version")
    assert (out.returncode, out.stdout, out.stderr) == (
        0, f"kexec-tools-compatible {KEXEC_TOOLS_INTERFACE} (kexec-py {__version__})\n", "")
    out = _run_installed(unpacked, "--help")
    assert (out.returncode, out.stdout, out.stderr) == (0, HELP_TEXT + "\n", "")
    # an unknown option goes through typer (Debian's python3-typer): usage error, exit 2
    out = _run_installed(unpacked, "--no-such-option")
    assert out.returncode == 2 and "No such option: --no-such-option" in out.stderr, out
    # kexec_py is the unpacked one, typer is Debian's
    where = subprocess.run([DEB_PYTHON, "-S", "-c", "import kexec_py, typer; print(kexec_py.__file__, typer.__file__)"],
                           env=_debian_env(unpacked), cwd=unpacked, capture_output=True, text=True, check=True
                           ).stdout.split()
    assert where == [str(unpacked / SITE / "kexec_py/__init__.py"), f"/{SITE}/typer/__init__.py"]


def test_installed_completions_parse_and_complete(unpacked):
    _need("bash", "zsh", "fish")
    share = unpacked / "usr/share"
    bash = share / "bash-completion/completions/kexec"
    subprocess.run(["bash", "-n", str(bash)], check=True)
    subprocess.run(["zsh", "-n", str(share / "zsh/vendor-completions/_kexec")], check=True)
    script = (f'source {bash}; COMP_WORDS=(kexec --load-p); COMP_CWORD=1; _kexec_py; echo "${{COMPREPLY[@]}}"')
    assert subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True
                          ).stdout.split() == ["--load-panic", "--load-preserve-context"]
    for command in ("kexec", "kexec-py"):
        fish = share / f"fish/vendor_completions.d/{command}.fish"
        subprocess.run(["fish", "--no-execute", str(fish)], check=True)
        out = subprocess.run(["fish", "--no-config", "-c", f"source {fish}; complete -C '{command} --ini'"],
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("--initrd\t"), out


def test_deb_changelog_matches_the_project_version():
    head = (ROOT / "debian/changelog").read_text().splitlines()[0]
    assert re.match(rf"kexec-py \({re.escape(__version__)}(-\S+)?\) ", head), head


# -- the RPM spec ---------------------------------------------------------------------------------

SPEC = ROOT / "packaging/kexec-py.spec"


@pytest.fixture(scope="module")
def spec() -> str:
    _need("rpmspec")
    proc = subprocess.run(["rpmspec", "-P", str(SPEC)], capture_output=True, text=True,
                          env={**BUILD_ENV, "HOME": os.environ.get("HOME", "/root")})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rpm_spec_expands(spec):
    text = SPEC.read_text()
    for macro in ("%pyproject_buildrequires", "%pyproject_wheel", "%pyproject_install",
                  "%pyproject_save_files", "%{pyproject_files}"):
        assert macro in text, macro
    assert re.search(rf"^Version:\s+{re.escape(__version__)}$", spec, re.M)
    assert "%{" not in "\n".join(line for line in spec.splitlines() if line.startswith(("Name:", "Version:")))


def test_rpm_relations(spec):
    """kdump-utils: Requires: kexec-tools >= 2.0.28-8, so the Provides is versioned above it."""
    provides = re.findall(r"^Provides:\s+(.*)$", spec, re.M)
    assert f"kexec-tools = {KEXEC_TOOLS_INTERFACE}-1" in provides
    assert tuple(map(int, KEXEC_TOOLS_INTERFACE.split("."))) >= (2, 0, 28)
    assert re.search(r"^Conflicts:\s+kexec-tools$", spec, re.M)
    assert re.search(r"^Obsoletes:\s+kexec-tools", spec, re.M) is None   # a choice, not an upgrade path


def test_completion_files_cover_every_option(tmp_path):
    """scripts/gen-completions writes every visible option into each shell's file."""
    subprocess.run([DEB_PYTHON, "-I", str(ROOT / "scripts/gen-completions"), str(tmp_path)], check=True,
                   capture_output=True, env=BUILD_ENV)
    files = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert sorted(files) == ["bash/kexec", "fish/kexec-py.fish", "fish/kexec.fish", "zsh/_kexec"]
    visible = [o for o in OPTIONS if not o.hidden and o.name not in ("install_completion", "show_completion")]
    for option in visible:
        for name in option.names:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", files["bash/kexec"]), name
            assert name in files["zsh/_kexec"], name
            flag = f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}"
            assert flag in files["fish/kexec.fish"], name
    for text in files.values():
        assert "--install-completion" not in text and "--root" not in text
