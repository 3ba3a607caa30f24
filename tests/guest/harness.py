"""Boot real kernels under QEMU (TCG) and report what happened in the guest.

Typical use::

    from tests.guest import harness
    result = harness.run(harness.kdump(harness.REFERENCE_LOAD))
    assert result.token_found, result.explain()

The guest runs the scenario's shell steps in its first kernel (see init.sh),
optionally crashes, and -- when a capture kernel was loaded -- reports from the
capture kernel whether the first kernel's log (with its random token) can be
read back from /proc/vmcore.  Anything that prevents a run (no QEMU, a failed
download, a missing library) raises: guest tests fail, they never skip.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import fetch, image

DEFAULT_TIMEOUT = 300.0
DEFAULT_MEM = 1536
DEFAULT_SMP = 2
DEFAULT_CRASHKERNEL = "384M"
# A 32-bit kernel reserves crash memory below 512 MiB, where KASLR also puts the
# kernel: 384M fits only when the kernel lands near an end, 192M always does.
ARCH_CRASHKERNEL = {"i386": "192M", "arm": "256M", "armmp": "256M"}    # arm: in lowmem (768 MiB of it on virt)

# Guest paths the load commands use (exported to every step).
GUEST_KERNEL = "/boot/vmlinuz"
GUEST_CAPTURE_INITRD = "/boot/capture.img"

# The reference loader (Debian's kexec-tools 2.0.25, kexec_load by default).
REFERENCE_LOAD = '/sbin/kexec -p "$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'
REFERENCE_UNLOAD = "/sbin/kexec -p -u"


def kexec_py_load(syscall: str = "c") -> str:
    """Our loader's kdump load command; syscall "c" = kexec_load, "s" = kexec_file_load."""
    if syscall not in ("c", "s"):
        raise ValueError(f"syscall must be 'c' or 's', not {syscall!r}")
    return f'kexec-py -p -{syscall} "$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'


KEXEC_PY_UNLOAD = "kexec-py -p -u"      # -p first: "-u -p" would unload, then try to load

# Firmware a guest can boot under: "bios" is QEMU's default (SeaBIOS on x86); "ovmf" is UEFI
# (Debian's ovmf package), x86_64 only. Under OVMF the kernel is started through its EFI stub,
# so the guest has /sys/firmware/efi (runtime map, systab).
OVMF_CODE = Path("/usr/share/ovmf/OVMF.fd")
FIRMWARES = ("bios", "ovmf")


def firmware_args(arch: str, firmware: str) -> list[str]:
    """QEMU's options for ``firmware``; raises when it is missing or not for ``arch``."""
    if firmware == "bios":
        return []
    if firmware != "ovmf":
        raise ValueError(f"firmware must be one of {FIRMWARES}, not {firmware!r}")
    if arch != "x86_64":
        raise ValueError(f"OVMF here is for x86_64 guests, not {arch}")
    if not OVMF_CODE.exists():
        raise fetch.FetchError(f"{OVMF_CODE} not found: install Debian's ovmf package (scripts/test-all does)")
    return ["-bios", str(OVMF_CODE)]


QEMU_MACHINE = {
    "x86_64": ["-machine", "pc", "-cpu", "qemu64,+rdrand"],
    "i386": ["-machine", "pc", "-cpu", "qemu32,+rdrand"],       # qemu32 has PAE, for 686-pae
    "aarch64": ["-machine", "virt", "-cpu", "max"],
    "arm": ["-machine", "virt", "-cpu", "cortex-a15"],                  # armmp-lpae
    "armmp": ["-machine", "virt,highmem=off", "-cpu", "cortex-a15"],    # no LPAE: no RAM above 4 GiB
    # pseries with SLOF; the caps TCG cannot provide are turned off, which silences four
    # "TCG doesn't support requested feature" warnings (the kernel boots either way).
    "ppc64le": ["-machine", "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
                "-cpu", "power9", "-vga", "none"],
    # s390x under TCG (next-arches-facts.md); the console is the SCLP line (ttysclp0).
    "s390x": ["-machine", "s390-ccw-virtio", "-cpu", "max"],
}


def capture_append(arch: fetch.Arch) -> str:
    """Command line for the capture kernel, after Debian's kdump-tools defaults
    (reset_devices nr_cpus=1 irqpoll nousb); panic=1 turns a failed capture
    into a reboot, which ends the QEMU run (-no-reboot)."""
    return f"{arch.console_param()} reset_devices nr_cpus=1 irqpoll nousb panic=1"


# On the capture kernel's command line: send the logs and the vmcore extract (init.sh).
DMESG_FILES = "kpy_dmesg=files"


def first_append(arch: fetch.Arch, crashkernel: str, extra: str = "") -> str:
    """Command line of the first kernel.  KASLR stays on (no nokaslr)."""
    line = f"{arch.console_param()} crashkernel={crashkernel} panic=1"
    return f"{line} {extra}".strip()


# --- scenarios ------------------------------------------------------------------

@dataclass
class Scenario:
    """Shell steps run in order by the first kernel's /init, then maybe a crash.

    Each step (name, shell text) is reported with the markers RC-<name>,
    MS-<name> (elapsed ms) and CRASH-LOADED-<name> (kexec_crash_loaded after).
    """

    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)
    crash: bool = False

    def guest_files(self, env: dict[str, str]) -> dict[str, str]:
        files = {"/etc/kpy/env": image.shell_env(env)}
        for i, (step, text) in enumerate(self.steps, start=1):
            if not re.fullmatch(r"[A-Za-z0-9_]+", step):
                raise ValueError(f"step name {step!r}: use letters, digits and _")
            files[f"/etc/kpy/steps/{i:02d}-{step}.sh"] = text.rstrip() + "\n"
        if self.crash:
            files["/etc/kpy/crash"] = "yes\n"
        return files


def kdump(load_command: str, name: str = "kdump") -> Scenario:
    """Load a capture kernel, then crash: the kdump proof."""
    return Scenario(name, [("load", load_command)], crash=True)


def reboot(load_command: str, name: str = "reboot", exec_command: str = "kexec-py -e") -> Scenario:
    """Load a kernel with -l, then boot it with -e; the new kernel's /init reports
    STAGE2-UP and STAGE2-CMDLINE when its command line has kpy_stage=2 (see
    ``stage2_append``), which proves which kernel and command line booted."""
    return Scenario(name, [("load", load_command), ("exec", exec_command)])


def stage2_append(arch: fetch.Arch, tag: str) -> str:
    """Command line for the kernel a reboot scenario boots into."""
    return f"{arch.console_param()} panic=1 kpy_stage=2 kpy_tag={tag}"


def reboot_load(arch_name: str, kernel: str, tag: str, flags: str = "") -> tuple[str, str]:
    """(a ``kexec-py -l`` command for ``kernel`` with the stage-2 initrd, the command line it
    passes); ``flags`` are extra single-letter options, e.g. "c", "s", "d"."""
    append = stage2_append(fetch.ARCHES[arch_name], tag)
    flag = f" -{flags}" if flags else ""
    return f'kexec-py -l{flag} {kernel} --initrd="{GUEST_CAPTURE_INITRD}" --append="{append}"', append


def assert_rebooted(result: "Result", cmdline: str) -> None:
    """The reboot scenario's load worked and the loaded kernel came up with ``cmdline``."""
    m = result.markers
    assert m.get("RC-load") == "0", f"the load command failed\n{result.explain()}"
    assert "STAGE2-UP" in m, f"the loaded kernel never ran /init\n{result.explain()}"
    assert m.get("STAGE2-CMDLINE", "").split() == cmdline.split(), f"wrong command line\n{result.explain()}"
    assert "POWEROFF" in m, f"the new kernel did not finish\n{result.explain()}"
    print(f"\n{result.scenario}: booted in {result.when('STAGE2-UP')} s, total {round(result.elapsed, 1)} s")


def assert_kdump_proof(result: "Result") -> None:
    """The kdump scenario loaded a crash kernel, and the capture kernel read the
    first kernel's token from /proc/vmcore."""
    m = result.markers
    assert m.get("RC-load") == "0", f"the load command failed\n{result.explain()}"
    assert m.get("CRASH-LOADED-load") == "1", f"no crash kernel loaded\n{result.explain()}"
    assert "CAPTURE-UP" in m, f"the capture kernel never ran /init\n{result.explain()}"
    assert m.get("VMCORE-DMESG-RC") == "0", f"vmcore-dmesg failed\n{result.explain()}"
    assert result.token_found, f"token not in the vmcore's log\n{result.explain()}"
    print(f"\n{result.scenario}: phases {result.phases()}")


def assert_makedumpfile_reads(result: "Result") -> None:
    """The capture kernel's makedumpfile (images of arches that fetch it, see init.sh)
    printed the dead kernel's log with the token and wrote a -l -d 31 dump."""
    m = result.markers
    assert m.get("MAKEDUMPFILE-DMESG-RC") == "0", f"makedumpfile --dump-dmesg failed\n{result.explain()}"
    assert m.get("MAKEDUMPFILE-TOKEN-FOUND") == result.token, \
        f"token not in makedumpfile's --dump-dmesg\n{result.explain()}"
    assert m.get("MAKEDUMPFILE-RC") == "0", f"makedumpfile -l -d 31 failed\n{result.explain()}"
    print(f"makedumpfile -l -d 31: {m.get('MAKEDUMPFILE-BYTES')} bytes in {m.get('MAKEDUMPFILE-MS')} ms")


def assert_python_dmesg_matches(result: "Result") -> None:
    """The capture kernel's kexec_py.vmcore.dmesg (init.sh's run_python_dmesg) printed the
    dead kernel's log from /proc/vmcore exactly as Debian's vmcore-dmesg did, token included
    (a run with ``dmesg_files=True``)."""
    m = result.markers
    assert m.get("PY-DMESG-RC") == "0", f"kexec_py.vmcore.dmesg failed in the capture kernel\n{result.explain()}"
    for name in ("vmcore-dmesg.txt", "kdump-py-dmesg.txt"):
        assert name in result.files, f"{name} did not reach the host (bad: {result.bad_files})\n{result.explain()}"
    reference = result.files["vmcore-dmesg.txt"].splitlines()
    ours = result.files["kdump-py-dmesg.txt"].splitlines()
    assert len(reference) > 10, f"vmcore-dmesg printed {len(reference)} lines\n{result.explain()}"
    for i, (a, b) in enumerate(zip(reference, ours)):
        assert a == b, f"line {i + 1} differs:\n vmcore-dmesg: {a!r}\n kexec_py:     {b!r}"
    assert len(ours) == len(reference), f"{len(ours)} lines from kexec_py, {len(reference)} from vmcore-dmesg"
    assert m.get("PY-DMESG-SAME") == "yes", f"the guest's cmp says the logs differ\n{result.explain()}"
    token = (result.token or "").encode()
    assert token and any(token in line for line in ours), f"token {result.token} not in kexec_py's log"
    # The capture kernel's extract of the vmcore (kexec_py.vmcore.extract) holds the whole log.
    assert m.get("VMCORE-EXTRACT-RC") == "0" and "vmcore-extract.gz" in result.files, result.explain()
    import gzip
    import io
    import tempfile

    from kexec_py.vmcore.dmesg import dmesg
    with tempfile.NamedTemporaryFile(prefix="kpy-extract-") as f:
        f.write(gzip.decompress(result.files["vmcore-extract.gz"]))
        f.flush()
        out = io.BytesIO()
        dmesg(f.name, out)
    assert out.getvalue().splitlines() == reference, "the extract's log differs from the vmcore's"
    print(f"kexec_py.vmcore.dmesg: {len(ours)} lines, the same as vmcore-dmesg's, "
          f"in {m.get('PY-DMESG-MS')} ms")


def load_unload(load_command: str, unload_command: str, name: str = "unload") -> Scenario:
    """Load, then unload; CRASH-LOADED-load / CRASH-LOADED-unload tell the story."""
    return Scenario(name, [("load", load_command), ("unload", unload_command)])


# --- results --------------------------------------------------------------------

@dataclass
class Marker:
    t: float          # host seconds since QEMU started
    key: str
    value: str


@dataclass(repr=False)
class Result:
    scenario: str
    log_path: Path
    elapsed: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    events: list[Marker] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    bad_files: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Result {self.scenario}: {len(self.events)} markers, log {self.log_path}>"

    @property
    def markers(self) -> dict[str, str]:
        """First value of each marker key."""
        out: dict[str, str] = {}
        for m in self.events:
            out.setdefault(m.key, m.value)
        return out

    def when(self, key: str) -> float | None:
        return next((m.t for m in self.events if m.key == key), None)

    @property
    def token(self) -> str | None:
        return self.markers.get("TOKEN")

    @property
    def token_found(self) -> bool:
        found = self.markers.get("TOKEN-FOUND")
        return found is not None and found == self.token

    def phases(self) -> dict[str, float | None]:
        """Seconds spent in each phase, from the host's clock."""
        def span(a: str, b: str) -> float | None:
            ta, tb = self.when(a), self.when(b)
            return None if ta is None or tb is None else round(tb - ta, 2)
        load_ms = self.markers.get("MS-load")
        return {
            "boot_to_init": self.when("INIT"),
            "load": int(load_ms) / 1000 if load_ms and load_ms.isdigit() else None,
            "crash_to_capture_up": span("CRASHING", "CAPTURE-UP"),
            "total": round(self.elapsed, 2),
        }

    def _log_lines(self) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").replace("\r", "").splitlines()

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self._log_lines()[-lines:])

    def step_output(self, step: str) -> str:
        """What a step printed on the console (kernel messages included)."""
        out, inside = [], False
        for line in self._log_lines():
            if f"KPY-MARK: STEP-BEGIN {step}" in line:
                inside = True
            elif f"KPY-MARK: RC-{step} " in line:
                break
            elif inside:
                out.append(line)
        return "\n".join(out)

    def explain(self) -> str:
        """A failure message: markers, phases, step outputs and the console's end."""
        marks = "\n".join(f"  {k} {v}" for k, v in self.markers.items())
        steps = "".join(f"--- step {m.value} ---\n{self.step_output(m.value)}\n"
                        for m in self.events if m.key == "STEP-BEGIN")
        return (f"scenario {self.scenario}: qemu rc={self.returncode} "
                f"timed_out={self.timed_out}\nmarkers:\n{marks}\nphases: {self.phases()}\n"
                f"log: {self.log_path}\n{steps}--- console tail ---\n{self.tail(40)}")


def _makedumpfile_rows(result: Result) -> list[tuple[str, str]]:
    """summary()'s makedumpfile line, when the capture kernel ran it."""
    m = result.markers
    if "MAKEDUMPFILE-DMESG-RC" not in m:
        return []
    found = "found" if m.get("MAKEDUMPFILE-TOKEN-FOUND") == result.token else "NOT found"
    return [("makedumpfile", f"--dump-dmesg exit {m['MAKEDUMPFILE-DMESG-RC']} (token {found}); "
                             f"-l -d 31 exit {m.get('MAKEDUMPFILE-RC', '-')}, "
                             f"{m.get('MAKEDUMPFILE-BYTES', '-')} bytes in {m.get('MAKEDUMPFILE-MS', '-')} ms")]


def summary(result: Result, loader: str) -> str:
    """A short human report of a kdump proof, ending in PASS or FAIL."""
    m = result.markers
    found = "found" if result.token_found else "NOT found"
    rows = [
        ("loader", loader),
        ("load exit status", f"{m.get('RC-load', '-')} ({m.get('MS-load', '-')} ms in the guest)"),
        ("crash kernel loaded", m.get("CRASH-LOADED-load", "-")),
        ("capture kernel up", "yes" if "CAPTURE-UP" in m else "no"),
        ("/proc/vmcore bytes", m.get("VMCORE-SIZE", "-")),
        ("vmcore-dmesg exit", m.get("VMCORE-DMESG-RC", "-")),
        ("token", f"{result.token} {found} in the dead kernel's log"),
        *_makedumpfile_rows(result),
        ("kexec_py dmesg", f"exit {m.get('PY-DMESG-RC', '-')}, {m.get('PY-DMESG-LINES', '-')} lines, "
                           f"same as vmcore-dmesg: {m.get('PY-DMESG-SAME', '-')}"),
        ("phases (s)", ", ".join(f"{k} {v}" for k, v in result.phases().items())),
        ("console log", str(result.log_path)),
    ]
    lines = [f"{label + ':':21} {value}" for label, value in rows]
    if not result.token_found:
        lines.append(f"--- load step output ---\n{result.step_output('load')}")
    lines.append("PASS" if result.token_found else "FAIL")
    return "\n".join(lines)


# --- the console ----------------------------------------------------------------

_MARK = re.compile(r"KPY-MARK: (\S+) ?(.*)$")
_FILE_BEGIN = re.compile(r"^KPY-FILE-BEGIN (\S+)$")
_FILE_END = re.compile(r"^KPY-FILE-END (\S+) ([0-9a-f]{32})$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=]+$")


class _Console:
    """Parses the serial console line by line as it arrives."""

    def __init__(self, result: Result, start: float, echo: bool) -> None:
        self.result, self.start, self.echo = result, start, echo
        self._file: str | None = None
        self._chunks: list[str] = []

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n").replace("\r", "")
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        if self._file is not None:
            self._feed_file(line)
        elif m := _FILE_BEGIN.match(line):
            self._file, self._chunks = m.group(1), []
        elif m := _MARK.search(line):
            t = round(time.monotonic() - self.start, 2)
            self.result.events.append(Marker(t, m.group(1), m.group(2).strip()))

    def _feed_file(self, line: str) -> None:
        end = _FILE_END.match(line)
        if end is None:
            if _BASE64.match(line):
                self._chunks.append(line)
            return
        data = base64.b64decode("".join(self._chunks))
        if end.group(1) != self._file or hashlib.md5(data).hexdigest() != end.group(2):
            self.result.bad_files.append(self._file)
        else:
            self.result.files[self._file] = data
        self._file = None


def _qemu_command(arch: fetch.Arch, kernel: Path, initrd: Path, append: str,
                  mem: int, smp: int, firmware: str = "bios", maxmem: int | None = None) -> list[str]:
    qemu = shutil.which(arch.qemu_binary)
    if qemu is None:
        raise fetch.FetchError(f"{arch.qemu_binary} not found: run scripts/guest-deps")
    memory = f"{mem}M,slots=2,maxmem={maxmem}M" if maxmem else str(mem)
    return [qemu, "-accel", "tcg", *QEMU_MACHINE[arch.name], *firmware_args(arch.name, firmware), "-m", memory,
            "-smp", str(smp), "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append]


def _boot(cmd: list[str], result: Result, timeout: float, echo: bool) -> None:
    """Run QEMU, log and parse its console; kill it after ``timeout`` seconds."""
    start = time.monotonic()
    console = _Console(result, start, echo)
    with open(result.log_path, "w") as log:
        log.write("# " + shlex.join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")

        def pump() -> None:
            for line in proc.stdout:
                log.write(line)
                console.feed(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            result.returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            proc.kill()
            result.returncode = proc.wait()
        reader.join(timeout=10)
    result.elapsed = time.monotonic() - start


# --- running a scenario ---------------------------------------------------------

def prepare(arch: str = "x86_64", refresh: bool = False) -> fetch.Inputs:
    """Host tools plus every cached guest input (what scripts/guest-deps does)."""
    if arch not in fetch.ARCHES:
        raise fetch.FetchError(f"unknown arch {arch!r}")
    fetch.ensure_host_tools(fetch.ARCHES[arch])
    return fetch.fetch(arch, refresh=refresh)


KEEP_RUNS = 40


def _run_dir(arch: fetch.Arch, name: str) -> Path:
    """A fresh directory for one run's images and console log (old ones pruned)."""
    runs = fetch.arch_dir(arch) / "runs"
    runs.mkdir(exist_ok=True)
    for old in sorted(runs.iterdir())[:-KEEP_RUNS]:
        shutil.rmtree(old, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = runs / f"{stamp}-{name}-{os.getpid()}"
    path.mkdir()
    return path


def run(scenario: Scenario, arch: str = "x86_64", *, mem: int = DEFAULT_MEM,
        smp: int = DEFAULT_SMP, crashkernel: str | None = None,
        append: str = "", timeout: float = DEFAULT_TIMEOUT, echo: bool = False,
        keep_images: bool = False, extra_files: dict[str, Path] | None = None,
        kernel: Path | None = None, firmware: str = "bios", installed: Path | None = None,
        dmesg_files: bool = False, maxmem: int | None = None) -> Result:
    """Build the images for ``scenario``, boot them, and return what the guest said.
    ``extra_files`` maps guest paths to host files baked into the first kernel's initrd;
    ``kernel`` replaces the Debian kernel (booted first, and /boot/vmlinuz in the guest);
    ``firmware`` is "bios" (QEMU's default) or "ovmf" (UEFI, x86_64); ``installed``, an unpacked
    kexec-py .deb, replaces the working tree's kexec_py (image.build_main);
    ``dmesg_files``: the capture kernel also sends both logs and a vmcore extract to the
    host (see ``assert_python_dmesg_matches``; some seconds more under TCG); ``maxmem`` (MiB)
    gives the machine room for hotplugged memory (on pseries: ibm,dynamic-reconfiguration-memory)."""
    firmware_args(arch, firmware)           # refuse a bad firmware before building anything
    inputs = prepare(arch)
    if kernel is not None:
        from dataclasses import replace
        inputs = replace(inputs, kernel=Path(kernel))
    crashkernel = crashkernel or ARCH_CRASHKERNEL.get(arch, DEFAULT_CRASHKERNEL)
    workdir = _run_dir(inputs.arch, scenario.name)
    env = {"KERNEL": GUEST_KERNEL, "CAPTURE_INITRD": GUEST_CAPTURE_INITRD,
           "CAPTURE_APPEND": capture_append(inputs.arch) + (f" {DMESG_FILES}" if dmesg_files else "")}
    capture_img = image.build_capture(inputs, workdir / "capture.img")
    main_img = image.build_main(inputs, capture_img, scenario.guest_files(env),
                                workdir / "main.img", extra_files=extra_files, installed=installed)
    cmd = _qemu_command(inputs.arch, inputs.kernel, main_img,
                        first_append(inputs.arch, crashkernel, append), mem, smp, firmware, maxmem)
    result = Result(scenario.name, workdir / "console.log")
    try:
        _boot(cmd, result, timeout, echo)
    finally:
        if not keep_images and not os.environ.get("KEXEC_PY_KEEP_IMAGES"):
            main_img.unlink(missing_ok=True)
            capture_img.unlink(missing_ok=True)
    for name, data in result.files.items():         # the guest's files, next to the console log
        (workdir / "files").mkdir(exist_ok=True)
        (workdir / "files" / Path(name).name).write_bytes(data)
    return result
