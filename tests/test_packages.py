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
installs; a missing tool fails the test, naming it. About a minute.

The dracut module (packaging/dracut/90kexec-py) is run with stand-ins for dracut's install
helpers, and the package's kexec then runs chrooted in the tree it filled.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from kexec_py import KEXEC_TOOLS_INTERFACE, __version__
from kexec_py.help_text import HELP_TEXT
from kexec_py.options import OPTIONS
from tests import debpkg, guard
from tests.debpkg import BUILD_ENV, ROOT, SITE

DEB_PYTHON = "/usr/bin/python3"                     # the package's #! interpreter
_need = debpkg.need
_field = debpkg.field


@pytest.fixture(scope="module")
def deb(built_deb) -> Path:
    return built_deb


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    return debpkg.unpack(deb, tmp_path_factory.mktemp("root"))


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
    visible = [o for o in OPTIONS if not o.hidden]
    for option in visible:
        for name in option.names:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", files["bash/kexec"]), name
            assert name in files["zsh/_kexec"], name
            flag = f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}"
            assert flag in files["fish/kexec.fish"], name
    for text in files.values():
        assert "--install-completion" not in text and "--root" not in text


# -- the dracut module ----------------------------------------------------------------------------

DRACUT_MODULE = "usr/lib/dracut/modules.d/90kexec-py/module-setup.sh"

# dracut's install helpers as the module uses them, for a test without dracut: each path is
# copied into $initdir from the unpacked package if it is there, else from this machine, with
# the symlinks it goes through and, for ELF files, the shared libraries ldd names (as dracut's
# inst_multiple does). The package's files land where dpkg would install them.
DRACUT_STUBS = r'''
set -u
derror() { echo "dracut error: $*" >&2; }
_put() {
    local src=$1 dest=${1#"$PKG_ROOT"} t lib
    if [ -e "$initdir$dest" ] || [ -L "$initdir$dest" ]; then return 0; fi
    mkdir -p "$initdir${dest%/*}"
    cp -a "$src" "$initdir$dest" || return 1
    if [ -L "$src" ]; then
        t=$(readlink "$src"); case $t in /*) ;; *) t=${src%/*}/$t ;; esac
        _put "$t" || return 1
    elif [ "$(head -c 4 "$src" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*'); do _put "$lib" || return 1; done
    fi
}
inst_multiple() {
    local p
    for p in "$@"; do
        if [ -e "$PKG_ROOT$p" ] || [ -L "$PKG_ROOT$p" ]; then _put "$PKG_ROOT$p" || return 1
        elif [ -e "$p" ]; then _put "$p" || return 1
        else echo "inst_multiple: $p not found" >&2; return 1; fi
    done
}
'''


def test_dracut_module_brings_what_kexec_needs(unpacked, tmp_path):
    """The packaged dracut module, run with stand-ins for dracut's helpers, fills an initramfs
    tree in which the package's kexec runs by itself (chroot): --version, an unknown option
    (typer's path), every kexec_py module imported, and a load that stops at the missing
    /proc with one line. Debian's python3 and python3-* packages are the system's here
    (scripts/test-all installs them), kexec_py is the package's."""
    _need("bash", "chroot", "ldd")
    module = unpacked / DRACUT_MODULE
    assert module.is_file() and os.access(module, os.X_OK)
    initdir = tmp_path / "initramfs"
    initdir.mkdir()
    env = {**BUILD_ENV, "PKG_ROOT": str(unpacked), "initdir": str(initdir), "PYTHONPATH": str(unpacked / SITE)}
    script = f'{DRACUT_STUBS}\n. "{module}"\ncheck; echo "check=$?"\ninstall; echo "install=$?"'
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert "check=255\n" in out.stdout, out          # only when asked for
    assert "install=0\n" in out.stdout, out
    assert (initdir / SITE / "kexec_py/data/purgatory").is_dir()
    assert not (initdir / "usr/lib/python3.11/test").exists()

    def chrooted(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(guard.guarded(["chroot", str(initdir), *args]), capture_output=True, text=True,
                              env={"PATH": "/usr/sbin:/usr/bin", "LC_ALL": "C.UTF-8"})

    out = chrooted("/usr/sbin/kexec", "--version")
    assert (out.returncode, out.stdout) == (0, f"kexec-tools-compatible {KEXEC_TOOLS_INTERFACE} (kexec-py {__version__})\n"), out
    out = chrooted("/usr/sbin/kexec", "--no-such-option")
    assert out.returncode == 2 and "No such option" in out.stderr, out
    imports = ("import importlib, pkgutil, kexec_py\n"
               "names = [m.name for m in pkgutil.walk_packages(kexec_py.__path__, 'kexec_py.')\n"
               "         if not m.name.endswith('__main__')]\n"
               "for n in names: importlib.import_module(n)\n"
               "print(len(names), kexec_py.__file__)")
    out = chrooted("/usr/bin/python3", "-c", imports)
    assert out.returncode == 0, out
    count, where = out.stdout.split()
    assert where == f"/{SITE}/kexec_py/__init__.py" and int(count) > 40, out
    # a real load path: the kernel is read and parsed, then the missing /proc/iomem stops it
    out = chrooted("/usr/sbin/kexec", "-p", "--dry-run", f"/{SITE}/kexec_py/__init__.py")
    assert out.returncode != 0 and len(out.stderr.splitlines()) == 1, out
