"""The one place that knows what pyelftools raises on damaged input.

pyelftools parses lazily and lets its own, its bundled construct's and the
standard library's exceptions through (ELFError, ValueError, EOFError,
struct.error, OverflowError from a seek past the end, UnicodeDecodeError).
Every reader of an ELF file we did not build catches ``elf_errors()`` and
reports a CorruptImage naming the file. AttributeError, KeyError and IndexError
are not among them: from our readers they are programming errors, which the
fuzz targets (scripts/fuzz) must see, not a "damaged file" message.
"""

from __future__ import annotations

import struct
from functools import lru_cache


@lru_cache(maxsize=1)
def elf_errors() -> tuple[type[BaseException], ...]:
    from elftools.common.exceptions import ELFError
    errors: list[type[BaseException]] = [ELFError, ValueError, EOFError, struct.error, OverflowError,
                                         UnicodeDecodeError]
    try:
        from elftools.construct.core import ConstructError
        errors.append(ConstructError)
    except ImportError:
        pass
    return tuple(errors)
