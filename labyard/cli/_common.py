"""What every CLI command shares: the instance it talks to, async running, output helpers.

stdout carries only results (ids, tables, JSON); progress and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rich.console import Console

from labyard.services import Labyard
from labyard.settings import Settings

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def run(work: Callable[[Labyard], Awaitable[T]], *, reconcile: bool = False) -> T:
    """Open the local instance, run `work` on it, close it."""

    async def main() -> T:
        labyard = Labyard(Settings.from_env())
        try:
            if reconcile:
                from labyard.services import reconcile as reconcile_round

                await reconcile_round(labyard.playgrounds)
            return await work(labyard)
        finally:
            labyard.close()

    return asyncio.run(main())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
