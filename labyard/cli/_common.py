"""What every CLI command shares: the instance it talks to, async running, output helpers.

stdout carries only results (ids, tables, JSON); progress and errors go to stderr.
Nothing here loads the server stack: `run` imports the services when it is called.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console

if TYPE_CHECKING:
    from labyard.services import Labyard

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@contextmanager
def local() -> Iterator[Labyard]:
    """The local instance (LABYARD_DATA_DIR), opened for one command that needs no event
    loop (the operator's `labyard admin ...`)."""
    from labyard.services import Labyard
    from labyard.settings import Settings

    labyard = Labyard(Settings.from_env())
    try:
        yield labyard
    finally:
        labyard.close()


def run(work: Callable[[Labyard], Awaitable[T]], *, reconcile: bool = False) -> T:
    """Open the local instance, run `work` on it, close it."""
    import asyncio

    from labyard.services import Labyard
    from labyard.services import reconcile as reconcile_round
    from labyard.settings import Settings

    async def main() -> T:
        labyard = Labyard(Settings.from_env())
        try:
            if reconcile:
                await reconcile_round(labyard.playgrounds)
            return await work(labyard)
        finally:
            labyard.close()

    return asyncio.run(main())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
