"""The man page and --help must describe the same options, and the page must be current."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from kexec_py.manpage import render

PAGE = Path(__file__).resolve().parent.parent / "man" / "kexec-py.8"


def help_options() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "kexec_py", "--help"], capture_output=True, text=True,
                         check=True).stdout
    return {m for line in out.splitlines() if re.match(r"^  -", line)
            for m in re.findall(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)", line.split("  ")[1])}


def man_options() -> set[str]:
    text = PAGE.read_text()
    section = text[text.index(".SH OPTIONS"):text.index(".SH RESERVING")]
    names = re.findall(r"\\fB((?:\\-)+[A-Za-z0-9](?:[\w]|\\-)*)\\fR", section)
    return {n.replace("\\-", "-") for n in names}


def test_committed_page_is_generated_from_the_cli():
    assert render(PAGE.read_text()) == PAGE.read_text(), "run scripts/gen-manpage"


def test_help_and_man_page_list_the_same_options():
    assert help_options() == man_options()


def test_every_kexec_tools_x86_option_is_documented():
    """kexec-tools' generic and x86 options (kexec/kexec.h, arch/i386/include/arch/options.h)."""
    kexec_tools = """-h --help -v --version -f --force -i --no-checks -x --no-ifdown -y --no-sync -l --load
        -p --load-panic -u --unload -e --exec -t --type --mem-min --mem-max --reuseinitrd --print-ckr-size
        --load-preserve-context --load-jump-back-helper --entry -s --kexec-file-syscall -c --kexec-syscall
        -a --kexec-syscall-auto -d --debug -S --status --hotplug --no-cma --force-dtb --exec-live-update
        --load-live-update --command-line --append --reuse-cmdline --initrd --ramdisk --dtb --args-elf
        --args-linux --args-none --module --real-mode --entry-32bit --reset-vga --serial --serial-baud
        --console-vga --console-serial --elf32-core-headers --elf64-core-headers --pass-memmap-cmdline
        --noefi --reuse-video-type""".split()
    assert set(kexec_tools) - man_options() == set()


def test_page_renders_without_warnings():
    assert shutil.which("groff"), "groff is needed to check the man page (apt-get install groff-base)"
    p = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
