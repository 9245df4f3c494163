"""The app's channel hook: one function, registered in ``app.py`` with ``@channels.authorizer``, that decides
the topics whose rule says ``hook`` (``channels.py``). It can refuse but never allows by failing: an
exception, an answer other than ``True`` or a timeout refuses. Its thread pool is made on first use, off the
authorizer's cold start.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

Hook = Callable[[Any, str, str], bool]  # (identity, topic, "subscribe" | "publish") -> allowed
HOOK_TIMEOUT_SECONDS = 1.0
_hook: Hook | None = None
_hook_pool: ThreadPoolExecutor | None = None
logger = logging.getLogger("ws.channels")


def authorizer(function: Hook | None) -> Hook | None:
    """Register the app's channel hook (``@channels.authorizer`` in ``app.py``): called for topics whose rule
    says ``hook``, with the verified identity, the topic and the action. An exception, a non-True answer or
    a timeout (``HOOK_TIMEOUT_SECONDS``) refuses: it never allows."""
    global _hook
    _hook = function
    return function


def ask_hook(caller: Any, topic: str, operation: str) -> bool:
    """The hook's answer, within ``HOOK_TIMEOUT_SECONDS``; False when there is none or it fails."""
    global _hook_pool
    hook = _hook
    if hook is None:
        return False  # a rule says hook and the app registered none: refused
    if _hook_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _hook_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="channel-hook")  # a race makes two: harmless
    future = _hook_pool.submit(hook, caller, topic, operation)
    try:
        return future.result(timeout=HOOK_TIMEOUT_SECONDS) is True
    except Exception as error:  # noqa: BLE001 - the hook's failure refuses, with one log line
        from .logs import log_event

        log_event(logger, "channel_hook_failed", logging.WARNING, topic=topic, action=operation,
                  error=type(error).__name__)  # a timeout: TimeoutError
        return False


__all__ = ["HOOK_TIMEOUT_SECONDS", "Hook", "ask_hook", "authorizer"]
