"""Root in a machine sees and touches only the machine's processes: not the host's, not
the control plane's, not another machine's; ptrace works on its own processes only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labyard.runtime.lxd.driver import LxdDriver
from tests.security.conftest import Machine

pytestmark = pytest.mark.asyncio(loop_scope="session")

MARKER = "labyard-escape-suite-host-marker"


@pytest.fixture
def host_process() -> Iterator[subprocess.Popen[bytes]]:
    """A host process with a marker in its command line, to look for from inside."""
    proc = subprocess.Popen([MARKER, "600"], executable="/bin/sleep")
    yield proc
    proc.kill()
    proc.wait()


PTRACE = """
import ctypes, errno, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
child = os.fork()
if child == 0:
    time.sleep(30); os._exit(0)
r = libc.ptrace(16, child, 0, 0)  # PTRACE_ATTACH to our own child: allowed
print("attach own", r)
os.waitpid(child, 0); libc.ptrace(17, child, 0, 0); os.kill(child, signal.SIGKILL)
pid = int(sys.argv[1]) if len(sys.argv) > 1 else 0
r = libc.ptrace(16, pid, 0, 0)
print("attach host", r, errno.errorcode.get(ctypes.get_errno()))
"""


async def test_host_processes_are_invisible(
    machine: Machine, host_process: subprocess.Popen[bytes]
) -> None:
    out = await machine.ok("ps -eo pid,args")
    assert "/sbin/init" in out or "systemd" in out, out  # control: its own processes
    assert MARKER not in out, out
    assert "pytest" not in out and "uvicorn" not in out, out
    pattern = MARKER[0] + "[" + MARKER[1] + "]" + MARKER[2:]  # grep must not find itself
    await machine.refused(f"grep -l {pattern} /proc/*/cmdline")
    await machine.refused(f"kill -0 {os.getpid()} && test -d /proc/{os.getpid()}/root/work")


async def test_ptrace_reaches_only_own_processes(
    machine: Machine, host_process: subprocess.Popen[bytes]
) -> None:
    code, out = await machine.sh(f"python3 - {host_process.pid} <<'PY'\n{PTRACE}\nPY")
    assert code == 0, out
    assert "attach own 0" in out, out
    # The host pid does not exist in the machine's PID namespace (or is another process
    # of the machine's own, which is then fine): never the host's sleep.
    assert "attach host -1" in out, out
    assert host_process.poll() is None
    status = Path(f"/proc/{host_process.pid}/status").read_text()
    assert "TracerPid:\t0" in status, status


async def test_root_inside_is_unprivileged_outside(machine: Machine) -> None:
    out = await machine.ok("cat /proc/self/uid_map /proc/self/gid_map")
    inside, outside, count = (int(x) for x in out.split()[:3])
    assert inside == 0 and outside >= 1 << 16 and count == 65536, out
    # From the host, the machine's init runs as that unprivileged host user.
    driver = machine.labyard.driver
    if isinstance(driver, LxdDriver):
        pid = (await driver.lxd.get(f"/1.0/instances/ly-{machine.playground.id}-m/state"))["pid"]
    else:
        state = await driver.runc.state(f"{machine.playground.id}-m")  # type: ignore[attr-defined]
        assert state is not None
        pid = state["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(outside)] * 4, uid_line
