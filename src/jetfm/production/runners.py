"""Where the tasks of an AOJ build run: in this process (``scheduler="inline"``) or on a Dask
cluster. Both take ``submit(tag, fn, *args, near=None)`` and yield ``(tag, result)`` from
``results()``."""
from __future__ import annotations

import uuid
from collections.abc import Iterator


class InlineRunner:
    """Runs submitted calls in this process, first in, first out (``scheduler="inline"``)."""

    def __init__(self):
        self._queue: list = []

    def submit(self, tag, fn, *args, near: str | None = None) -> None:
        self._queue.append((tag, fn, args))

    def results(self) -> Iterator[tuple]:
        while self._queue:
            tag, fn, args = self._queue.pop(0)
            yield tag, fn(*args)

    def cancel(self) -> None:
        self._queue.clear()


class DaskRunner:
    """Submits calls to a Dask cluster; yields (tag, result) in completion order. A task that
    raises (a worker crash, say) comes back as the exception object."""

    def __init__(self, client, workers: list[str] | None):
        from distributed import as_completed

        self.client, self.workers = client, workers
        self._ac = as_completed()
        self._tags: dict = {}
        self._prefix = f"build-aoj-{uuid.uuid4().hex[:8]}"
        self._n = 0

    def submit(self, tag, fn, *args, near: str | None = None) -> None:
        """``near``: a worker to prefer (one that has the input open), others allowed."""
        if self.workers is None and near is not None:
            where, loose = [near], True
        else:
            where, loose = self.workers, False
        fut = self.client.submit(fn, *args, pure=False, key=f"{self._prefix}-{self._n}",
                                 workers=where, allow_other_workers=loose)
        self._n += 1
        self._tags[fut.key] = tag
        self._ac.add(fut)

    def results(self) -> Iterator[tuple]:
        for fut in self._ac:
            tag = self._tags.pop(fut.key)
            res = fut.exception() if fut.status == "error" else fut.result()
            fut.release()
            yield tag, res

    def cancel(self) -> None:
        futs = list(self._ac.futures)
        self._ac.clear()
        if futs:
            self.client.cancel(futs)
