#!/bin/bash
# dracut module "kexec-py": what a Python kexec needs inside an initramfs.
#
# kexec-py's /usr/sbin/kexec is a Python program. A dracut module that copies the kexec
# binary alone (earlykdump: "inst_binary /usr/sbin/kexec") brings only its first line. With
# this module in the same image, the interpreter, its standard library and the modules kexec-py
# imports come too. It is not included by default (it adds tens of MB); ask for it where
# kexec runs inside the initramfs:
#
#     echo 'add_dracutmodules+=" kexec-py "' > /etc/dracut.conf.d/kexec-py.conf
#
# Written for kexec-py; installed by its packages in dracut's modules.d.

# only when asked for, or named by another module's depends()
check() {
    return 255
}

depends() {
    return 0
}

# The files of one importable module: a package's whole directory, or a single module file
# (an extension such as _cffi_backend). Prints nothing for a module that is not installed.
# (Called in $(...), a subshell: its cd changes nothing else.)
_kexec_py_module_files() {
    # from /: "python -c" looks in the current directory first
    cd / && "$1" -s -c '
import importlib.util, os, sys
spec = importlib.util.find_spec(sys.argv[1])
if spec is not None:
    if spec.submodule_search_locations:
        for top in spec.submodule_search_locations:
            for d, dirs, files in os.walk(top):
                dirs[:] = [x for x in dirs if x not in ("tests", "test")]
                for f in files:
                    print(os.path.join(d, f))
    else:
        print(spec.origin)
' "$2"
}

install() {
    local python stdlib name files
    python=$(readlink -f /usr/bin/python3) || return 1
    stdlib=$("$python" -I -S -c 'import os; print(os.path.dirname(os.__file__))') || return 1

    # the commands and the interpreter (dracut adds the shared libraries of ELF files)
    inst_multiple /usr/sbin/kexec /usr/sbin/kexec-py /usr/bin/python3 "$python" || return 1

    # the standard library with its compiled bytecode, less what no loader imports
    # shellcheck disable=SC2046
    inst_multiple $(find "$stdlib" \( -path "$stdlib/*-packages" -o -path "$stdlib/test" \
        -o -path "$stdlib/idlelib" -o -path "$stdlib/tkinter" -o -path "$stdlib/turtledemo" \
        -o -path "$stdlib/ensurepip" -o -path "$stdlib/lib2to3" -o -path "$stdlib/config-*" \
        -o -path "$stdlib/pydoc_data" \) -prune -o \( -type f -o -type l \) -print) || return 1

    # kexec_py and the modules it imports; click is inside typer's own package from 0.26 on
    for name in kexec_py elftools construct typer click _cffi_backend; do
        files=$(_kexec_py_module_files "$python" "$name")
        if [ -z "$files" ]; then
            [ "$name" = click ] && continue
            derror "kexec-py: the Python module $name is not installed"
            return 1
        fi
        # shellcheck disable=SC2086
        inst_multiple $files || return 1
    done
}
