"""SSH access to playground machines: the control plane's only way in.

`connect` / `wait_until_ready` give a `Connection` (host key pinned) that runs commands,
opens terminals, copies files and forwards ports. Failures surface as `AccessFailure`.
"""

from labyard.access import _asyncssh  # noqa: F401  (first: asyncssh without its liboqs probe)
from labyard.access.bridge import bridge_socket
from labyard.access.commands import ExecResult
from labyard.access.keys import KeyPair, generate_keypair, public_key_of
from labyard.access.pty import PtySession
from labyard.access.ssh import (
    Connection,
    Dial,
    Forwarder,
    PortStream,
    Target,
    connect,
    connect_over,
    wait_until_ready,
)

__all__ = [
    "Connection",
    "Dial",
    "ExecResult",
    "Forwarder",
    "KeyPair",
    "PortStream",
    "PtySession",
    "Target",
    "bridge_socket",
    "connect",
    "connect_over",
    "generate_keypair",
    "public_key_of",
    "wait_until_ready",
]
