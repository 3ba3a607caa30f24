#!/bin/busybox sh
# /init of both kexec_py guest images (busybox ash).
#
# First-kernel mode (no /proc/vmcore): write a random token to the kernel
# log, run the scenario's steps (/etc/kpy/steps/NN-NAME.sh, each reported
# with markers), then crash through sysrq if /etc/kpy/crash exists, else
# power off.
# Capture mode (/proc/vmcore exists, i.e. we are the kdump kernel): read the
# dead kernel's log with Debian's vmcore-dmesg, look for the token, read it again
# with kexec_py's vmcore reader and send both logs to the host (and, where the
# image has it, read the dump with Debian's makedumpfile), power off.
# Second-kernel mode (kpy_stage=2 on the command line, booted by kexec -e):
# report the command line, power off.
#
# Every line the host parses starts with "KPY-MARK: KEY [VALUE]".  Steps are
# sourced in a subshell, so they see $KERNEL & co. and the helpers below
# (mark, kpy_put).

/bin/busybox mkdir -p /proc /sys /dev /tmp /run /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
exec </dev/console >/dev/console 2>&1

mark() { echo "KPY-MARK: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
crash_loaded() { cat /sys/kernel/kexec_crash_loaded 2>/dev/null || echo none; }

# Copy a guest file to the host through the console: base64 between markers,
# closed by its md5 so the host can reject a garbled transfer.
#   kpy_put GUEST_PATH [SOURCE_FILE] [MAX_BYTES]
kpy_put() {
    name=$1 src=${2:-$1}
    if [ ! -e "$src" ]; then mark FILE-ABSENT "$name"; return 0; fi
    if [ -n "$3" ]; then head -c "$3" "$src" >/tmp/kpy.put; else cat "$src" >/tmp/kpy.put; fi
    if [ $? -ne 0 ]; then mark FILE-ERROR "$name"; return 0; fi
    echo "KPY-FILE-BEGIN $name"
    base64 </tmp/kpy.put
    echo "KPY-FILE-END $name $(md5sum </tmp/kpy.put | cut -d' ' -f1)"
}

# What this kernel has of EFI (UEFI guests): the runtime map, the system table, and
# whether it uses the firmware's runtime services (the kernel makes the efivars mount
# point only when it can call GetVariable; efivarfs itself is a module, not in the image).
report_efi() {
    if [ ! -d /sys/firmware/efi ]; then mark EFI none; return 0; fi
    mark EFI "$(cat /sys/firmware/efi/fw_platform_size 2>/dev/null)"
    mark EFI-RUNTIME-MAP "$(ls /sys/firmware/efi/runtime-map 2>/dev/null | wc -l)"
    mark EFI-SYSTAB "$(tr '\n' ' ' </sys/firmware/efi/systab 2>/dev/null)"
    if [ -d /sys/firmware/efi/efivars ]; then mark EFI-RUNTIME yes; else mark EFI-RUNTIME no; fi
}

run_step() {
    step=$1
    name=$(basename "$step" .sh)
    name=${name#*-}
    mark STEP-BEGIN "$name"
    sed -e '/^#/d' -e 's/^/  $ /' "$step"
    t0=$(uptime_s)
    ( . "$step" ) 2>&1
    rc=$?
    t1=$(uptime_s)
    mark "RC-$name" "$rc"
    mark "MS-$name" "$(awk "BEGIN { printf \"%d\", ($t1 - $t0) * 1000 }")"
    mark "CRASH-LOADED-$name" "$(crash_loaded)"
}

first_kernel() {
    mark INIT first "$(uptime_s)"
    mark KERNEL "$(uname -r)"
    mark CMDLINE "$(cat /proc/cmdline)"
    mark CRASH-SIZE "$(cat /sys/kernel/kexec_crash_size 2>/dev/null)"
    token=KPY-TOKEN-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$token written by the kexec_py guest harness" >/dev/kmsg
    mark TOKEN "$token"
    mark CRASH-LOADED-INITIAL "$(crash_loaded)"
    report_efi
    [ -f /etc/kpy/env ] && . /etc/kpy/env
    for step in /etc/kpy/steps/*.sh; do
        [ -f "$step" ] && run_step "$step"
    done
    if [ -e /etc/kpy/crash ]; then
        mark CRASHING "$(uptime_s)"
        echo c >/proc/sysrq-trigger
        sleep 5
        mark CRASH-DID-NOT-HAPPEN
    fi
}

capture_kernel() {
    mark CAPTURE-UP "$(uptime_s)"
    mark CAPTURE-CMDLINE "$(cat /proc/cmdline)"
    report_efi
    mark VMCORE-SIZE "$(stat -c %s /proc/vmcore)"
    vmcore-dmesg /proc/vmcore >/tmp/dmesg.txt 2>/tmp/dmesg.err
    mark VMCORE-DMESG-RC $?
    mark VMCORE-DMESG-LINES "$(wc -l </tmp/dmesg.txt)"
    head -c 2000 /tmp/dmesg.err
    token=$(grep -o 'KPY-TOKEN-[0-9a-f]*' /tmp/dmesg.txt | head -n 1)
    if [ -n "$token" ]; then
        mark TOKEN-FOUND "$token"
    else
        mark TOKEN-MISSING
        tail -n 20 /tmp/dmesg.txt
    fi
    command -v kdump-py-dmesg >/dev/null && run_python_dmesg
    command -v makedumpfile >/dev/null && run_makedumpfile
}

# kexec_py's own vmcore reader (python3 -m kexec_py.vmcore.dmesg) on the same
# /proc/vmcore, compared here (PY-DMESG-SAME); with kpy_dmesg=files on the command line
# both outputs and a log-only vmcore extract also go to the host (kpy_put).
run_python_dmesg() {
    t0=$(uptime_s)
    kdump-py-dmesg /proc/vmcore >/tmp/py-dmesg.txt 2>/tmp/py-dmesg.err
    mark PY-DMESG-RC $?
    t1=$(uptime_s)
    mark PY-DMESG-MS "$(awk "BEGIN { printf \"%d\", ($t1 - $t0) * 1000 }")"
    mark PY-DMESG-LINES "$(wc -l </tmp/py-dmesg.txt)"
    head -c 2000 /tmp/py-dmesg.err
    if cmp -s /tmp/dmesg.txt /tmp/py-dmesg.txt; then mark PY-DMESG-SAME yes; else mark PY-DMESG-SAME no; fi
    grep -q 'kpy_dmesg=files' /proc/cmdline || return 0      # the rest when a test asks (harness.run)
    kpy_put vmcore-dmesg.txt /tmp/dmesg.txt
    kpy_put kdump-py-dmesg.txt /tmp/py-dmesg.txt
    # Only the log's pages, as a small vmcore (the host keeps some as test fixtures).
    PYTHONPATH=/opt/kpy/lib PYTHONDONTWRITEBYTECODE=1 python3 -S -m kexec_py.vmcore.extract \
        /proc/vmcore /tmp/vmcore-extract >/dev/null 2>/tmp/extract.err && gzip -9 /tmp/vmcore-extract
    mark VMCORE-EXTRACT-RC $?
    head -c 1000 /tmp/extract.err
    [ -f /tmp/vmcore-extract.gz ] && kpy_put vmcore-extract.gz /tmp/vmcore-extract.gz
}

# Debian's makedumpfile, where the capture image has it: --dump-dmesg reads the log
# through the kernel's symbols (VMCOREINFO); -l -d 31 (the kdump-tools default) walks
# the page tables and mem_map, so wrong virtual addresses in the core header fail it.
# Its output goes through a pipe in the flattened format (-F) and is only counted, so
# the dump needs no room in the capture kernel's memory.
run_makedumpfile() {
    makedumpfile --dump-dmesg /proc/vmcore /tmp/mdf-dmesg.txt >/tmp/mdf.out 2>&1
    mark MAKEDUMPFILE-DMESG-RC $?
    tail -c 1500 /tmp/mdf.out
    token=$(grep -o 'KPY-TOKEN-[0-9a-f]*' /tmp/mdf-dmesg.txt 2>/dev/null | head -n 1)
    if [ -n "$token" ]; then mark MAKEDUMPFILE-TOKEN-FOUND "$token"; else mark MAKEDUMPFILE-TOKEN-MISSING; fi
    t0=$(uptime_s)
    { makedumpfile -F -l -d 31 /proc/vmcore 2>/tmp/mdf.err; echo $? >/tmp/mdf.rc; } | wc -c >/tmp/mdf.size
    t1=$(uptime_s)
    mark MAKEDUMPFILE-RC "$(cat /tmp/mdf.rc)"
    mark MAKEDUMPFILE-BYTES "$(cat /tmp/mdf.size)"
    mark MAKEDUMPFILE-MS "$(awk "BEGIN { printf \"%d\", ($t1 - $t0) * 1000 }")"
    tail -c 1500 /tmp/mdf.err
}

# Second-kernel mode of a reboot scenario (-l then -e): the command line says so.
second_kernel() {
    mark STAGE2-UP "$(uptime_s)"
    mark STAGE2-KERNEL "$(uname -r)"
    mark STAGE2-CMDLINE "$(cat /proc/cmdline)"
    report_efi
}

if [ -e /proc/vmcore ]; then capture_kernel
elif grep -q 'kpy_stage=2' /proc/cmdline; then second_kernel
else first_kernel; fi
mark POWEROFF "$(uptime_s)"
sync
poweroff -f
