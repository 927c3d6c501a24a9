"""The task engine: attempts at challenges and tutorials, and the checks that follow them.

engine.py    Attempts: start (playground + init tasks), follow, answer, end, resume
checker.py   one attempt's check loop: ~1 tick/s, one SSH exec per machine per tick
script.py    the batch script a tick runs in a machine, and its parsed output
helpers.sh   bash check helpers (docker_container_is_running, port_is_listening, ...)
states.py    the task state machine (created, blocked, running, completed, failed)
audience.py  subscribers of each attempt's events, and the pause rule
pool.py      one SSH connection per machine, kept open across ticks
records.py   attempts and task results in the database
spec.py      what an attempt checks, frozen at its start
selftest.py  `labyard content test`: a challenge passes with its solution, not without
runs.py      each task's last check output, in memory (authors see it, learners never)
devtools.py  the authors' task panel and `labyard content debug`: live tasks, re-run, reset
"""

from labyard.services.tasks.engine import Attempts
from labyard.services.tasks.records import AttemptRecord, TaskRecord

__all__ = ["AttemptRecord", "Attempts", "TaskRecord"]
