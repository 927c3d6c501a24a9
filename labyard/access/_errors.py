"""Translate asyncssh and socket exceptions into `AccessFailure`, in one place.

Every public entry point of `labyard.access` runs its SSH work inside `translated(...)`, so
callers only ever see the labyard error tree. The message names the machine (for the user);
`detail` keeps the library's own words (for the log); `reason` is a short metrics label.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncssh

from labyard.errors import AccessFailure


def describe(exc: BaseException) -> str:
    """The library's own words for `exc`, for the log."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def translate(exc: BaseException, where: str, action: str) -> AccessFailure:
    """An `AccessFailure` for `exc`, raised while doing `action` on machine `where`."""
    detail = describe(exc)
    # Order matters: asyncssh's disconnect errors are subclasses of one another, and
    # TimeoutError / ConnectionRefusedError are OSError subclasses.
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        message = f"{where} presented a host key that does not match the pinned one"
        reason = "host_key_mismatch"
    elif isinstance(exc, asyncssh.PermissionDenied):
        message = f"{where} refused the playground's SSH key"
        reason = "auth_failed"
    elif isinstance(exc, asyncssh.ConnectionLost | ConnectionResetError | BrokenPipeError):
        message = f"the SSH connection to {where} was lost while trying to {action}"
        reason = "connection_lost"
    elif isinstance(exc, asyncssh.DisconnectError):
        message = f"{where} closed the SSH connection while trying to {action}: {exc.reason}"
        reason = "disconnected"
    elif isinstance(exc, asyncssh.ChannelOpenError):
        message = f"{where} refused to {action}: {exc.reason}"
        reason = "channel_refused"
    elif isinstance(exc, asyncssh.SFTPError):
        message = f"could not {action} on {where}: {exc.reason}"
        reason = "file_copy_failed"
    elif isinstance(exc, TimeoutError):
        message = f"{where} did not answer in time while trying to {action}"
        reason = "timeout"
    elif isinstance(exc, ConnectionRefusedError):
        message = f"nothing accepts SSH connections on {where}"
        reason = "connection_refused"
    elif isinstance(exc, OSError):
        message = f"could not {action} on {where}: {exc.strerror or exc}"
        reason = "os_error"
    else:
        message = f"SSH to {where} failed while trying to {action}"
        reason = "ssh_error"
    return AccessFailure(message, detail=detail, reason=reason)


@contextlib.contextmanager
def translated(where: str, action: str) -> Iterator[None]:
    """Re-raise asyncssh and OS errors from the block as `AccessFailure`, chained."""
    try:
        yield
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, where, action) from exc
