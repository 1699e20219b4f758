"""One run of a job per burst of requests: a request during a run asks for one more run.

At scale, watch events come in thousands (every pod bound, every node patched), and each used
to start a full check of every object; now events only poke, and one check runs for many.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class Coalescer:
    def __init__(self, name: str, delay: float = 0.0) -> None:
        self._name = name
        # Waiting a moment before each run lets a burst of events pile into it.
        self._delay = delay
        self._job: Job | None = None
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def poke(self, job: Job) -> asyncio.Task[None]:
        """Makes sure job runs after this call; returns the task that will run it."""
        self._job = job
        if self._task is not None and not self._task.done():
            self._again = True
            return self._task
        self._task = asyncio.get_running_loop().create_task(self._runs())
        return self._task

    async def run(self, job: Job) -> None:
        """poke(), then waits for that run (a cancelled caller leaves it running)."""
        await asyncio.shield(self.poke(job))

    async def _runs(self) -> None:
        while True:
            self._again = False
            if self._delay:
                await asyncio.sleep(self._delay)
            job = self._job
            if job is not None:
                try:
                    await job()
                except Exception:  # a failed run must not stop later ones
                    logger.exception("%s failed", self._name)
            if not self._again:
                return
