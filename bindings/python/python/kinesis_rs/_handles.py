"""The Python half of ``PutHandle``: its asyncio and concurrent.futures faces.

A handle calls its done-callbacks on the binding's completer thread (or at once, when it has
resolved already); these copy the outcome into the future of the caller's choice, in the way
that future must be resolved from another thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures


def asyncio_future(handle) -> asyncio.Future:
    """An asyncio future of the handle's result, on the running loop (what ``await`` uses)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def resolved(handle) -> None:
        try:
            loop.call_soon_threadsafe(_copy, handle, future)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to await it

    handle.add_done_callback(resolved)
    return future


def _copy(handle, future) -> None:
    """The handle's outcome into an asyncio or concurrent.futures future (the asyncio one may have
    been cancelled by its awaiter meanwhile)."""
    if future.cancelled():
        return
    error = handle.exception(0)
    if error is None:
        future.set_result(handle.result(0))
    else:
        future.set_exception(error)


def concurrent_future(handle) -> concurrent.futures.Future:
    """A ``concurrent.futures.Future`` of the handle's result."""
    future = concurrent.futures.Future()
    future.set_running_or_notify_cancel()

    handle.add_done_callback(lambda handle: _copy(handle, future))
    return future
