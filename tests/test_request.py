"""kexec-tools' action semantics (kexec/kexec.c main()) and option value rules."""

import pytest

from kexec_py.cli_request import build_request, parse_number
from kexec_py.errors import UsageError
from kexec_py.request import Steps, Syscall, steps_from_options


def S(**kw):
    return Steps(**kw)


@pytest.mark.parametrize("seen,expect", [
    ([], S()),                                                      # load, then shutdown -r now
    (["load"], S(shutdown=False, load_given=True)),                 # -l still syncs
    (["load_panic"], S(shutdown=False, sync=False, crash=True)),
    (["load_panic", "unload"], S(load=False, shutdown=False, sync=False, unload=True, crash=True)),
    (["unload", "load_panic"], S(load=True, shutdown=False, sync=False, unload=True, crash=True)),
    (["exec"], S(load=False, shutdown=False, sync=True, ifdown=True, exec=True)),
    (["force"], S(load=True, shutdown=False, sync=True, ifdown=True, exec=True)),
    (["load", "exec"], S(load=False, shutdown=False, ifdown=True, exec=True, load_given=True)),
    (["status", "load"], S(status=True, shutdown=False, load_given=True)),
    (["kexec_file_syscall", "kexec_syscall"], S(syscall=Syscall.LOAD)),
    (["kexec_syscall", "kexec_syscall_auto"], S(syscall=Syscall.AUTO)),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_action_options_in_order(seen, expect):
    assert steps_from_options(seen) == expect


def test_no_sync_and_no_ifdown_win_whatever_the_order():
    assert steps_from_options(["force"], no_sync=True, no_ifdown=True) == S(
        shutdown=False, sync=False, ifdown=False, exec=True)


@pytest.mark.parametrize("text,value", [("0x1000", 4096), ("4096", 4096), ("010", 8), ("0", 0)])
def test_numbers_like_strtoul(text, value):
    assert parse_number(text, "--mem-min") == value


def _values(**kw):
    base = dict(kernel="k", initrd=None, append=None, reuse_cmdline=False, debug=False, dry_run=False,
                image_type=None, no_checks=False, mem_min=None, mem_max=None, entry=None, hotplug=False,
                dtb=None, no_cma=False, force_dtb=False, no_sync=False, no_ifdown=False, reset_vga=False,
                serial=None, serial_baud=None, console_vga=False, console_serial=False,
                elf32_core_headers=False, elf64_core_headers=False, pass_memmap_cmdline=False, noefi=False,
                reuse_video_type=False, args_linux=False, args_none=False)
    return base | kw


@pytest.mark.parametrize("kw,match", [
    (dict(mem_min="zz"), "--mem-min: bad number"),
    (dict(mem_min="0x2000", mem_max="0x1000"), "above --mem-max"),
    (dict(serial="ttyS9"), "--serial"),
    (dict(serial="0x10000"), "--serial"),
    (dict(serial_baud=1234), "--serial-baud"),
    (dict(serial_baud=230400), "--serial-baud"),
])
def test_bad_values_are_usage_errors(kw, match):
    with pytest.raises(UsageError, match=match):
        build_request([], _values(**kw), arch="x86_64")


def test_x86_values():
    req = build_request(["load_panic"], _values(serial="ttyS1", serial_baud=9600, console_serial=True,
                                                elf32_core_headers=True, mem_max="0x7fffffff"), arch="x86_64")
    opts = req.arch_options
    assert opts.serial_port == 0x2F8 and opts.serial_baud == 9600 and opts.core_header_class == 32
    assert req.mem_max == 0x7FFFFFFF and req.crash


def test_x86_options_refused_elsewhere():
    with pytest.raises(UsageError, match="x86 options are not available on arm64"):
        build_request([], _values(console_serial=True), arch="arm64")
