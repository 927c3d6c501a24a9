"""Structure of the machines' seccomp profile (labyard.runtime.seccomp), as runc and liblxc load it.

Names are checked against the host's libseccomp, the library runc itself links, through
ctypes: no extra package is needed, and the test is skipped where libseccomp is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import platform
from collections import Counter
from typing import Any

import pytest

from labyard.errors import RuntimeFailure
from labyard.runtime import seccomp

ARCHES = ("x86_64", "aarch64")

MUST_REFUSE = (
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "perf_event_open",
    "bpf",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "syslog",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    "uselib",
    "_sysctl",
)
MUST_ALLOW = (
    "mount",
    "umount2",
    "unshare",
    "setns",
    "clone",
    "clone3",
    "ptrace",
    "reboot",
    "pivot_root",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "fsopen",
    "fsconfig",
    "fsmount",
    "sethostname",
    "chroot",
    "seccomp",
    "execve",
    "openat2",
    "faccessat2",
    "close_range",
    "pidfd_open",
)

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_ALG, AF_VSOCK = 1, 2, 10, 16, 17, 38, 40
ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC = 0x0040000, 0x0400000


def _rules(prof: dict[str, Any], action: str = "SCMP_ACT_ALLOW") -> list[dict[str, Any]]:
    return [r for r in prof["syscalls"] if r["action"] == action]


def _unconditional(prof: dict[str, Any]) -> set[str]:
    return {n for r in _rules(prof) if not r.get("args") for n in r["names"]}


def _permits(prof: dict[str, Any], name: str, arg0: int) -> bool:
    """Whether some allow rule lets `name` through with this first argument."""
    ops = {"SCMP_CMP_EQ": int.__eq__, "SCMP_CMP_NE": int.__ne__, "SCMP_CMP_LT": int.__lt__}
    for rule in _rules(prof):
        if name not in rule["names"]:
            continue
        args = rule.get("args") or []
        if all(ops[a["op"]](arg0, a["value"]) for a in args if a["index"] == 0):
            return True
    return False


@pytest.fixture(params=ARCHES)
def prof(request: pytest.FixtureRequest) -> dict[str, Any]:
    return seccomp.profile(request.param)


@pytest.mark.parametrize("name", MUST_REFUSE)
def test_refuses(prof: dict[str, Any], name: str) -> None:
    assert name in seccomp.REFUSED
    assert all(name not in r["names"] for r in prof["syscalls"])


@pytest.mark.parametrize("name", MUST_ALLOW)
def test_allows(prof: dict[str, Any], name: str) -> None:
    assert name in _unconditional(prof)


def test_refused_list_is_refused(prof: dict[str, Any]) -> None:
    allowed = {n for r in _rules(prof) for n in r["names"]}
    assert not allowed & set(seccomp.REFUSED)
    assert not set(seccomp.NOT_IMPLEMENTED) & set(seccomp.REFUSED)


def test_default_is_eperm_and_keyring_is_enosys(prof: dict[str, Any]) -> None:
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    assert prof["defaultErrnoRet"] == 1
    enosys = [r for r in _rules(prof, "SCMP_ACT_ERRNO") if r.get("errnoRet") == 38]
    assert [sorted(r["names"]) for r in enosys] == [["add_key", "keyctl", "request_key"]]
    actions = {r["action"] for r in prof["syscalls"]}
    assert actions == {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"}


def test_names_are_unique(prof: dict[str, Any]) -> None:
    for group in (seccomp.ALLOWED, seccomp.NEWER_ALLOWED, *seccomp.ARCH_ALLOWED.values()):
        dupes = [n for n, c in Counter(group).items() if c > 1]
        assert not dupes
    plain = [n for r in prof["syscalls"] if not r.get("args") for n in r["names"]]
    assert not [n for n, c in Counter(plain).items() if c > 1]
    conditional = {n for r in prof["syscalls"] if r.get("args") for n in r["names"]}
    assert conditional == {"socket", "personality"}
    assert not conditional & set(plain)


def test_one_condition_per_argument(prof: dict[str, Any]) -> None:
    # runc 1.1 turns several conditions on one argument into separate (ORed) rules.
    for rule in prof["syscalls"]:
        indexes = [a["index"] for a in rule.get("args") or []]
        assert len(indexes) == len(set(indexes)), rule


@pytest.mark.parametrize(
    ("family", "ok"),
    [
        (AF_UNIX, True),
        (AF_INET, True),
        (AF_INET6, True),
        (AF_NETLINK, True),
        (AF_PACKET, True),
        (AF_ALG, False),
        (AF_VSOCK, False),
        (46, False),
    ],
)
def test_socket_families(prof: dict[str, Any], family: int, ok: bool) -> None:
    assert _permits(prof, "socket", family) is ok


@pytest.mark.parametrize(
    ("persona", "ok"),
    [(0, True), (0xFFFFFFFF, True), (ADDR_NO_RANDOMIZE, True), (READ_IMPLIES_EXEC, False)],
)
def test_personality(prof: dict[str, Any], persona: int, ok: bool) -> None:
    assert _permits(prof, "personality", persona) is ok


def test_architectures() -> None:
    # The native ABI only: 32-bit programs are refused.
    assert seccomp.profile("x86_64")["architectures"] == ["SCMP_ARCH_X86_64"]
    assert seccomp.profile("aarch64")["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert seccomp.profile("amd64") == seccomp.profile("x86_64")
    assert seccomp.profile("arm64") == seccomp.profile("aarch64")
    if platform.machine() in ARCHES:
        assert seccomp.profile() == seccomp.profile(platform.machine())
    with pytest.raises(RuntimeFailure):
        seccomp.profile("riscv64")


def test_arch_specific_names() -> None:
    x86, arm = set(seccomp.allowed("x86_64")), set(seccomp.allowed("aarch64"))
    assert {"arch_prctl", "modify_ldt", "socketcall"} <= x86 - arm
    assert {"set_tls", "cacheflush"} <= arm - x86


def test_is_json_and_fresh(prof: dict[str, Any]) -> None:
    assert json.loads(json.dumps(prof)) == prof
    prof["syscalls"].clear()
    assert seccomp.profile(ARCHES[0])["syscalls"]


def _libseccomp() -> ctypes.CDLL:
    path = ctypes.util.find_library("seccomp")
    if path is None:
        pytest.fail("libseccomp is not installed (runc needs it: run scripts/setup.sh)")
    lib = ctypes.CDLL(path)
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    return lib


ABIS = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


@pytest.mark.parametrize("arch", ARCHES)
def test_names_known_to_libseccomp(arch: str) -> None:
    """Each name is a real syscall of the architecture's native or 32-bit ABIs, as libseccomp
    sees it (the 32-bit names stay listed, ignored by a native-only filter, so turning a
    32-bit ABI back on is one line).

    NEWER_ALLOWED is exempt: names the host's libseccomp may not know yet (runc skips
    them). Negative numbers are libseccomp's stand-ins for calls another ABI has.
    """
    lib = _libseccomp()
    prof = seccomp.profile(arch)
    tokens = []
    for scmp in ABIS[arch]:
        token = lib.seccomp_arch_resolve_name(scmp.removeprefix("SCMP_ARCH_").lower().encode())
        assert token, scmp
        tokens.append(token)
    names = {n for r in prof["syscalls"] for n in r["names"]} - set(seccomp.NEWER_ALLOWED)
    unknown = sorted(
        n
        for n in names
        if all(lib.seccomp_syscall_resolve_name_arch(t, n.encode()) < 0 for t in tokens)
    )
    assert not unknown


@pytest.mark.parametrize("arch", ARCHES)
def test_the_lxc_policy_is_the_same_allow_list(arch: str) -> None:
    lines = seccomp.lxc_policy(arch).splitlines()
    section = {"x86_64": "[x86_64]", "aarch64": "[arm64]"}[arch]
    assert lines[:3] == ["2", "allowlist errno 1", section]  # one native section: no 32-bit ABI
    plain = {line for line in lines[3:] if " " not in line}
    assert plain == set(seccomp.allowed(arch))
    for name in MUST_REFUSE:
        assert not any(line.split()[0] == name for line in lines[3:]), name
    conditional = [line for line in lines if " allow [" in line]
    assert f"socket allow [0,{seccomp.SOCKET_FAMILIES_BELOW},SCMP_CMP_LT]" in conditional
    assert "socket allow [0,38,SCMP_CMP_EQ]" not in conditional  # AF_ALG stays refused
    assert len(conditional) == 1 + len(seccomp.SOCKET_FAMILIES) + len(seccomp.PERSONALITIES)
    assert {line for line in lines[3:] if " errno " in line} == {
        f"{name} errno {seccomp.ENOSYS}" for name in seccomp.NOT_IMPLEMENTED
    }
