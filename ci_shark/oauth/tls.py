"""The TLS context of a run, loaded while the rest of ci_shark is still importing.

Loading a CA bundle is 30-40 ms of OpenSSL work during which CPython releases the GIL, so
the CLI starts it on a thread before its heavy imports (pydantic-settings, httpx) and the
HTTP clients pick it up when they are built: off the path to the approval link when a
second core is free.

The trust is the system's: OpenSSL's default paths, so ``SSL_CERT_FILE``/``SSL_CERT_DIR``
work and a self-hosted runner's corporate CA installed in the distribution's store counts.
A system where OpenSSL finds no CA at all (a slim image, a python.org macOS build) gets
certifi's bundle instead. Windows gets both: its store is filled on demand, so what
Python sees of it may lack a public root. A ``ca-bundle`` input replaces all of it.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
import threading


def create_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_bundle``, else the system (see above)."""
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    context = ssl.create_default_context()
    if sys.platform == "win32" or not _has_trust(context):
        # Imported only here: most systems have a store, and certifi's import is not free.
        import certifi  # noqa: PLC0415

        context.load_verify_locations(cafile=certifi.where())
    return context


# How OpenSSL names the certificates of a CA directory: subject hash, dot, number.
_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.r?[0-9]+")


def _has_trust(context: ssl.SSLContext) -> bool:
    if context.cert_store_stats()["x509_ca"] > 0:
        return True
    # A CA directory is read lazily, certificate by certificate: it counts when it holds
    # hashed names. SSL_CERT_DIR may list several, like PATH.
    paths = ssl.get_default_verify_paths()  # its .capath is None for such a list
    capath = os.environ.get(paths.openssl_capath_env, paths.openssl_capath)
    return any(_holds_hashed_certs(directory) for directory in capath.split(os.pathsep))


def _holds_hashed_certs(directory: str) -> bool:
    if not directory:
        return False
    try:
        with os.scandir(directory) as entries:
            return any(_HASHED_NAME.fullmatch(entry.name) for entry in entries)
    except OSError:  # missing, not a directory, not ours to read: no trust from there
        return False


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
