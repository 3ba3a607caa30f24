"""A module-style appended signature (include/linux/module_signature.h), as the kernel's
sign-file appends it to modules and, on s390x and ppc64le, to kernel images:

    the signed bytes | the PKCS#7 signature (sig_len bytes) | struct module_signature | MARKER

struct module_signature is 12 bytes: algo, hash, id_type, signer_len, key_id_len (one byte
each), three bytes of padding, then sig_len, big-endian. For a PKCS#7 signature id_type is
PKEY_ID_PKCS7 and every other byte field is 0 (the signer and key id are inside the PKCS#7).
"""

from construct import Bytes, Int8ub, Int32ub, Struct

MARKER = b"~Module signature appended~\n"       # MODULE_SIG_STRING
PKEY_ID_PKCS7 = 2

module_signature = Struct(
    "algo" / Int8ub,
    "hash" / Int8ub,
    "id_type" / Int8ub,
    "signer_len" / Int8ub,
    "key_id_len" / Int8ub,
    "pad" / Bytes(3),
    "sig_len" / Int32ub,
)
assert module_signature.sizeof() == 12


def appended_pkcs7(data) -> bool:
    """Whether ``data`` ends in a well-formed appended PKCS#7 signature: the marker, a
    module_signature saying PKCS#7 with its other fields 0, and a signature shorter than
    what precedes it (the checks a kernel makes before it verifies the signature itself)."""
    view = memoryview(data)
    tail = len(MARKER) + module_signature.sizeof()
    if len(view) < tail or bytes(view[-len(MARKER):]) != MARKER:
        return False
    ms = module_signature.parse(bytes(view[-tail:-len(MARKER)]))
    return (ms.id_type == PKEY_ID_PKCS7 and ms.sig_len < len(view) - tail
            and not (ms.algo or ms.hash or ms.signer_len or ms.key_id_len or any(ms.pad)))
