"""What a claim does in each machine of a warm playground (pools.py): the learner's key
in, what pre-start work left in shells out.

`reset_over` runs `CLAIM_SCRIPT` as root over the connection the pool has held since the
warm start (no SSH handshake on the learner's clock), or over a new one when that one died.
The tests of the pools' bookkeeping run it in the fake driver's machines (their /root is
their own); tests/services/test_pools.py runs it on real machines.
"""

from __future__ import annotations

import logging

from labyard.access import Connection, Target, connect
from labyard.errors import AccessFailure, LabyardError

log = logging.getLogger(__name__)

CLAIM_SCRIPT = r"""
umask 077
[ -d /root/.ssh ] || mkdir -p /root/.ssh
printf '%s\n' "$LABYARD_CLAIM_KEY" > /root/.ssh/authorized_keys || exit 1
for socket in /tmp/tmux-*/*; do
  [ -S "$socket" ] || continue
  for pid in $(tmux -S "$socket" list-panes -a -F '#{pane_pid}' 2>/dev/null); do
    kill -KILL -- "-$pid" "$pid" 2>/dev/null
  done
  tmux -S "$socket" kill-server 2>/dev/null
  rm -f "$socket"
done
for home in /root /home/*; do
  for file in .bash_history .zsh_history .sh_history .python_history .lesshst .viminfo \
      .local/share/fish/fish_history; do
    [ -e "$home/$file" ] && rm -f "$home/$file"
  done
done
for file in /var/log/wtmp /var/log/btmp /var/log/lastlog; do
  [ -s "$file" ] && : > "$file"
done
exit 0
"""
"""Run as root on each machine of a claimed playground (pools.py says what it resets). Shell
builtins where it can: with nothing to clean (the usual case) it forks nothing, and a claim
is on the learner's clock. A pane's shell is killed with SIGKILL first: a shell that gets
SIGHUP writes its history on the way out, after the history was emptied."""


async def reset_over(held: Connection | None, target: Target, public_key: str) -> None:
    """The claim script over the held connection; if it died meanwhile (a machine that
    restarted, sshd that dropped it), over a new one."""
    if held is not None:
        try:
            await reset_machine(held, public_key)
            return
        except AccessFailure as exc:
            log.info("held connection to %s failed, connecting again: %s", target.where, exc)
    connection = await connect(target)
    try:
        await reset_machine(connection, public_key)
    finally:
        connection.close()


async def reset_machine(connection: Connection, public_key: str) -> None:
    result = await connection.run(CLAIM_SCRIPT, timeout=30, env={"LABYARD_CLAIM_KEY": public_key})
    if result.exit_code != 0:
        raise LabyardError(
            f"resetting machine {connection.target.where} for its claim failed",
            detail=result.stderr[-500:],
        )
