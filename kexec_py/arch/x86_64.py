"""x86_64: bzImage kernels, ELF vmlinux files and unified kernel images (UKI), entered
at their 64-bit entry point through our purgatory."""

from __future__ import annotations

from kexec_py.arch.base import FileInputs, LoadInputs, not_taken
from kexec_py.errors import UnsupportedImage
from kexec_py.image.bzimage import looks_like_bzimage, parse_bzimage
from kexec_py.image.open import ImageFormat
from kexec_py.plan.ranges import MiB, align_up
from kexec_py.record import Record
from kexec_py.structs import kexec_uapi as K

# The kexec_load plans live in kexec_py.arch.x86_64_load, and the vmlinux and UKI readers
# in their own modules: imported when a load needs them, not by the kexec_file_load path
# of a bzImage (issue 13: that path's whole run is a few times kexec-tools' start-up).
PAGE_SIZE = 4096                # x86.PAGE_SIZE (kexec_py.arch.x86 is not imported here)


def _looks_like_elf(head: bytes) -> bool:
    from kexec_py.image.vmlinux import looks_like_elf
    return looks_like_elf(head)


def _parse_vmlinux(data, *, path: str):
    from kexec_py.image.vmlinux import parse_vmlinux
    return parse_vmlinux(data, path=path)


def _looks_like_pe(head: bytes) -> bool:
    from kexec_py.image.uki import looks_like_pe
    return looks_like_pe(head)


ENTRY64_OFFSET = 0x200          # startup_64 relative to the protected-mode kernel
ENTRY64_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
SETUP_MIN = 0x3000              # nothing of ours below the real-mode trampoline area
INITRD_MIN = 16 * MiB
EM_X86_64 = 62
ELF_KERNEL_ALIGN = 2 * MiB      # an x86_64 kernel runs at any 2 MiB-aligned physical address
ELF_KERNEL_MIN = 16 * MiB       # ... but not lower than its link address (CONFIG_PHYSICAL_START) needs
ELF_CMDLINE_SIZE = 2047         # COMMAND_LINE_SIZE (2048) less the NUL, as the kernel copies it
# kexec_file_load appends "elfcorehdr=0x<addr> " (MAX_ELFCOREHDR_STR_LEN) to the command line
# and checks the room for it on every load, crash or not
ELFCOREHDR_STR_LEN = 30


def _parse_uki(data: bytes, *, path: str) -> Uki:
    """A UKI whose .linux is an x86_64 bzImage."""
    from dataclasses import replace

    from kexec_py.image.uki import machine_name, parse_uki
    from kexec_py.structs.pe import IMAGE_FILE_MACHINE_AMD64
    uki = parse_uki(data, path=path)
    if uki.machine != IMAGE_FILE_MACHINE_AMD64:
        raise UnsupportedImage(f"{path} is a UKI for {machine_name(uki.machine)}, not x86_64",
                               "give the x86_64 build of the image")
    return replace(uki, kernel=parse_bzimage(uki.linux, path=f"{path} (.linux section)"))


class X86_64(Record):
    _defaults = dict(
        name="x86_64",
        kexec_arch=K.KEXEC_ARCH_X86_64,
        native_kexec_arch=K.KEXEC_ARCH_X86_64,
        destination_limit=1 << 52,         # MAXMEM with 5-level paging, the larger of its two values
        elf_machine="EM_X86_64",
        has_file_syscall=True,
        device_tree=False,
        hotplug_flag=K.KEXEC_UPDATE_ELFCOREHDR,    # --hotplug (0: not supported here)
        signed_kind="a signed bzImage (or UKI)",
        formats=(                           # tuple[ImageFormat, ...]
            ImageFormat("bzImage64", looks_like_bzimage, parse_bzimage),
            ImageFormat("elf-x86_64", _looks_like_elf, _parse_vmlinux),
            ImageFormat("uki", _looks_like_pe, _parse_uki),
        ),
    )
    __slots__ = tuple(_defaults)

    def read_crash_facts(self, sys) -> x86.CrashFacts:
        from kexec_py.arch import x86
        return x86.read_crash_facts(sys, page_offset_default=x86.PAGE_OFFSET_DEFAULT)

    def plan_crash(self, image, inputs: LoadInputs, facts: x86.CrashFacts, purgatory) -> SegmentPlan:
        from kexec_py.arch import x86_64_load
        return x86_64_load.plan_crash(image, inputs, facts, purgatory)

    def read_load_facts(self, sys) -> x86.LoadFacts:
        from kexec_py.arch import x86
        return x86.read_load_facts(sys)

    def plan_load(self, image, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
        from kexec_py.arch import x86_64_load
        return x86_64_load.plan_load(image, inputs, facts, purgatory)

    def file_inputs(self, image) -> FileInputs:
        """A bzImage as it is; a UKI's .linux, with its .initrd and .cmdline; no vmlinux
        (the kernel's x86_64 kexec_file_load knows only bzImages)."""
        if image.format == "vmlinux":
            raise not_taken(f"kexec_file_load on x86_64 takes no vmlinux kernels, and {image.path} is one")
        kernel = initrd = cmdline = None
        bz = image
        if image.format == "uki":
            kernel, initrd, cmdline, bz = image.linux, image.initrd, image.cmdline, image.kernel
        from kexec_py.structs.fast import XLF_CAN_BE_LOADED_ABOVE_4G
        if not bz.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G:
            raise not_taken(f"{image.path} cannot be loaded above 4 GiB (no XLF_CAN_BE_LOADED_ABOVE_4G), "
                            "which kexec_file_load requires")
        return FileInputs(kernel=kernel, initrd=initrd, cmdline=cmdline,
                          kernel_memory=align_up(bz.init_size, PAGE_SIZE), kernel_align=bz.kernel_alignment,
                          cmdline_max=bz.cmdline_size - ELFCOREHDR_STR_LEN)

    def signed(self, kernel) -> bool:
        """An Authenticode signature (an EFI-stub bzImage, a UKI's .linux)."""
        from kexec_py.image.uki import has_pe_signature
        return has_pe_signature(kernel)


