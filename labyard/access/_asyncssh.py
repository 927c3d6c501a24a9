"""asyncssh, imported without its compile-and-link probe for liboqs.

At import, asyncssh looks for liboqs (post-quantum key exchange) with
`ctypes.util.find_library`, which on a host without it falls back to compiling and linking
a test program with gcc and ld, for two names: 20-150 ms of every `labyard exec`, before
SSH can start. A library the dynamic loader would load is in ldconfig's cache, so while
asyncssh imports only the cache is asked: the answer is the same, minus the compiler.
"""

from __future__ import annotations

import ctypes.util

_cache_only = getattr(ctypes.util, "_findSoname_ldconfig", None)
"""Linux's ldconfig-cache lookup (private to ctypes.util; absent elsewhere)."""

_find_library = ctypes.util.find_library
if _cache_only is not None:
    ctypes.util.find_library = _cache_only
try:
    import asyncssh
finally:
    ctypes.util.find_library = _find_library

__all__ = ["asyncssh"]
