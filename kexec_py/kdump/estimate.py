"""How much memory this machine's capture kernel needs: kdump-py crashkernel --estimate.

    need = kernel + initrd + memmap + bitmap + cpus + runtime + luks, rounded up to 16 MiB

kernel   the memory the capture kernel occupies once running, from its own header:
         a bzImage's init_size, an arm64 Image's image_size, an ELF vmlinux's
         PT_LOAD extent (a gzip/xz/zstd/... wrapped file is unwrapped first; an image
         of none of these kinds counts 4 times its file size)
initrd   3 times the capture initrd's file size: the compressed file, kept until it is
         unpacked, plus its contents in the page cache (about twice the file)
memmap   the capture kernel's own page structures: SIZE(page) bytes (VMCOREINFO;
         64 if unknown) for every page of the reservation, i.e. 1/64 of it on 4 KiB
         pages, 1/1024 on 64 KiB pages
bitmap   makedumpfile's two bitmaps over the first kernel's RAM: 2 bits a page (what
         makes terabyte machines need more)
cpus     1 MiB for each CPU the capture kernel brings up: 1 with nr_cpus=1 or
         maxcpus=1 on the capture command line, else every possible CPU (per-CPU areas,
         stacks, run queues)
runtime  64 MiB: the kernel's boot-time allocations and the dump's user space (udev,
         a shell, makedumpfile with its cyclic buffer)
luks     when /etc/crypttab lists devices, the Argon2 memory cost of the costliest
         keyslot among their LUKS2 headers (1 GiB, cryptsetup's maximum, for a header
         that cannot be read); the capture kernel must unlock the dump target
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kexec_py.errors import KexecError
from kexec_py.kdump.crashkernel import MiB, human

ROUND = 16 * MiB
RUNTIME = 64 * MiB
PER_CPU = 1 * MiB
UNKNOWN_IMAGE_FACTOR = 4
INITRD_FACTOR = 3
LUKS_UNREADABLE = 1024 * MiB        # cryptsetup's largest default Argon2 memory cost (1 GiB)
LUKS2_MAGIC = b"LUKS\xba\xbe"
CRYPTTAB = "/etc/crypttab"

# kdumpctl's defaults (kdump-lib.sh get-default-crashkernel, ../shared/reference/callers.md),
# shown beside our estimate; ppc64le's is scaled per CPU by kdumpctl, so none is shown
KDUMPCTL_DEFAULTS = {"x86_64": "2G-64G:256M,64G-:512M", "s390x": "2G-64G:256M,64G-:512M",
                     "arm64": "2G-4G:256M,4G-64G:320M,64G-:576M"}


@dataclass
class Term:
    name: str
    size: int
    why: str


@dataclass
class Estimate:
    terms: list[Term] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> int:
        return sum(t.size for t in self.terms)

    @property
    def total(self) -> int:
        return -(-self.exact // ROUND) * ROUND


def kernel_memory(data: bytes, *, path: str, depth: int = 0) -> tuple[int, str]:
    """(bytes, how it was found) for a kernel image's running footprint."""
    from kexec_py.image.arm64_image import looks_like_arm64_image, parse_arm64_image
    from kexec_py.image.bzimage import looks_like_bzimage, read_setup_header
    from kexec_py.image.decompress import decompress, sniff
    if looks_like_bzimage(data):
        hdr, _ = read_setup_header(data, path=path)
        if hdr.version >= 0x020A and hdr.init_size:
            return hdr.init_size, "bzImage init_size"
    if looks_like_arm64_image(data):
        return parse_arm64_image(data, path=path).image_size, "arm64 Image image_size"
    if data[:4] == b"\x7fELF":
        extent = _elf_extent(data)
        if extent:
            return extent, "ELF PT_LOAD extent"
    kind = sniff(data[:64])
    if kind and depth < 2:
        size, how = kernel_memory(decompress(data, kind, what=path), path=path, depth=depth + 1)
        return size, f"{how}, after {kind}"
    return len(data) * UNKNOWN_IMAGE_FACTOR, f"{UNKNOWN_IMAGE_FACTOR} x the file (unknown image kind)"


def _elf_extent(data: bytes) -> int:
    import io

    from elftools.elf.elffile import ELFFile
    try:
        loads = [s for s in ELFFile(io.BytesIO(data)).iter_segments() if s["p_type"] == "PT_LOAD"]
    except Exception:           # pyelftools raises many kinds on a damaged file
        return 0
    if not loads:
        return 0
    return max(s["p_paddr"] + s["p_memsz"] for s in loads) - min(s["p_paddr"] for s in loads)


def luks_memory(sys) -> tuple[int, list[str]]:
    """(bytes, notes): the Argon2 memory cost of the costliest keyslot over the devices
    /etc/crypttab lists (0 when it lists none)."""
    text = sys.read_optional(CRYPTTAB) if sys.exists(CRYPTTAB) else None
    worst, notes = 0, []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        source = fields[1]
        for prefix, top in (("UUID=", "/dev/disk/by-uuid/"), ("PARTUUID=", "/dev/disk/by-partuuid/"),
                            ("LABEL=", "/dev/disk/by-label/")):
            if source.startswith(prefix):
                source = top + source[len(prefix):]
        cost = _luks2_cost(sys, source)
        if cost is None:
            notes.append(f"{fields[0]} ({source}): cannot read a LUKS2 header; counted as {human(LUKS_UNREADABLE)}")
            cost = LUKS_UNREADABLE
        worst = max(worst, cost)
    return worst, notes


def _luks2_cost(sys, device: str) -> int | None:
    try:
        head = sys.read_bytes(sys.resolve(device), limit=4096)
        if not head.startswith(LUKS2_MAGIC) or int.from_bytes(head[6:8], "big") != 2:
            return None
        hdr_size = int.from_bytes(head[8:16], "big")
        area = sys.read_bytes(sys.resolve(device), limit=min(hdr_size, 4 << 20))[4096:]
        meta = json.loads(area.split(b"\0", 1)[0])
    except (KexecError, ValueError):
        return None
    costs = [int(slot.get("kdf", {}).get("memory", 0)) * 1024 for slot in meta.get("keyslots", {}).values()]
    return max(costs, default=0)


def capture_cpus(sys, append: str | None) -> tuple[int, str]:
    words = (append or "").split()
    if "nr_cpus=1" in words or "maxcpus=1" in words:
        return 1, "nr_cpus=1/maxcpus=1 on the capture command line"
    try:
        n = len(sys.possible_cpus())
    except KexecError:
        n = 0
    return max(n, 1), "every possible CPU (no nr_cpus=1 on the capture command line)"


def estimate(sys, *, kernel: str | None, initrd: str | None, append: str | None,
             reservation: int | None = None) -> Estimate:
    """The estimate for the machine ``sys`` shows (``kernel``, ``initrd``: paths inside
    it; ``reservation``: the size whose page structures to count, default the estimate's
    own first pass)."""
    est = Estimate()
    if kernel:
        size, how = kernel_memory(sys.read_bytes(sys.resolve(kernel)), path=kernel)
        est.terms.append(Term("kernel", size, f"{kernel}: {how}"))
    else:
        est.notes.append("no capture kernel found: the kernel term is missing")
    if initrd:
        file_size = sys.file_size(initrd) or 0
        est.terms.append(Term("initrd", INITRD_FACTOR * file_size,
                              f"{INITRD_FACTOR} x {initrd} ({human(file_size)})"))
    else:
        est.notes.append("no capture initrd found: the initrd term is missing")
    page = _page_size(sys)
    ram = sys.ram_size() or 0
    est.terms.append(Term("bitmap", ram // page // 4, f"2 bits for each of the {ram // page} pages of "
                                                      f"{human(ram)} of RAM"))
    cpus, why = capture_cpus(sys, append)
    est.terms.append(Term("cpus", cpus * PER_CPU, f"{cpus} x {human(PER_CPU)}: {why}"))
    est.terms.append(Term("runtime", RUNTIME, "boot-time allocations and the dump's user space"))
    luks, notes = luks_memory(sys)
    est.notes.extend(notes)
    if luks:
        est.terms.append(Term("luks", luks, "Argon2 memory of the costliest LUKS2 keyslot in /etc/crypttab"))
    page_struct = _page_struct_size(sys)
    base = reservation or -(-est.exact * page // (page - page_struct) // ROUND) * ROUND
    est.terms.append(Term("memmap", base // page * page_struct,
                          f"{page_struct} bytes for each {human(page)} page of {human(base)}"))
    return est


def _page_size(sys) -> int:
    try:
        return sys.page_size
    except KexecError:
        return 4096


def _page_struct_size(sys) -> int:
    from kexec_py.system.kcore import parse_kcore
    try:
        value = parse_kcore(sys.kcore_headers()).vmcoreinfo.get("SIZE(page)") if sys.exists("/proc/kcore") else None
        return int(value) if value else 64
    except (KexecError, ValueError):
        return 64
