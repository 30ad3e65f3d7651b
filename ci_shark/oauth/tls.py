"""The TLS context of a run, loaded while the rest of ci_shark is still importing.

Loading a CA bundle is 30-40 ms of OpenSSL work during which CPython releases the GIL, so
the CLI starts it on a thread before its heavy imports (pydantic-settings, httpx) and the
HTTP client picks it up when it is built: off the path to the approval link when a second
core is free. The trust is httpx's own ``verify=True`` without ``trust_env``: certifi's
bundle; a ``ca-bundle`` input replaces it.
"""

from __future__ import annotations

import ssl
import threading

import certifi


def create_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_bundle``, or certifi's bundle."""
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())


class _DefaultContext:
    """certifi's context, built once per process, possibly ahead of time on a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._context: ssl.SSLContext | None = None

    def preload(self) -> None:
        with self._lock:
            if self._loader is not None or self._context is not None:
                return
            loader = self._loader = threading.Thread(
                target=self._load, name="ci_shark-tls", daemon=True
            )
        loader.start()

    def _load(self) -> None:
        try:
            context = create_context()
        except (OSError, ssl.SSLError):
            return  # get() loads it again, and raises there
        with self._lock:
            self._context = self._context or context

    def get(self) -> ssl.SSLContext:
        with self._lock:
            loader = self._loader
        if loader is not None:
            loader.join()
        with self._lock:
            if self._context is None:
                self._context = create_context()
            return self._context


_default = _DefaultContext()


def preload_default_context() -> None:
    """Start loading the default context on a daemon thread (once per process)."""
    _default.preload()


def context_for(ca_bundle: str | None) -> ssl.SSLContext:
    """The context for a client: the preloaded default one, unless ``ca_bundle`` is set."""
    return create_context(ca_bundle) if ca_bundle else _default.get()
