"""The TLS context: the system's trust (certifi when there is none), preloaded once on a
thread, replaced by an explicit CA bundle. Real handshakes with a loopback server."""

from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
from contextlib import suppress
from pathlib import Path

import certifi
import pytest
from support.loopback_tls import LoopbackCertificate, loopback_certificate

from ci_shark.oauth import tls


def test_preloaded_default_context_is_shared_and_verifies() -> None:
    tls.preload_default_context()
    tls.preload_default_context()  # a second call starts nothing new
    context = tls.context_for(None)
    assert context is tls.context_for(None)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0


def test_ca_bundle_replaces_the_default_trust() -> None:
    context = tls.context_for(certifi.where())
    assert context is not tls.context_for(None)
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_without_preload_the_context_is_built_on_demand() -> None:
    fresh = tls._DefaultContext()
    assert fresh.get() is fresh.get()


def _handshake(context: ssl.SSLContext, certificate: LoopbackCertificate) -> None:
    """A real TLS handshake with a loopback server presenting ``certificate``."""
    server_context = certificate.server_context()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            raw, _ = listener.accept()
            with suppress(OSError), server_context.wrap_socket(raw, server_side=True):
                pass

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            address = listener.getsockname()
            with (
                socket.create_connection(address, timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                pass
        finally:
            server.join(5)


def test_the_default_trust_is_the_systems_and_honours_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A self-hosted runner's corporate CA, installed for OpenSSL: trusted without ca-bundle.
    certificate = loopback_certificate(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.create_context(), certificate)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert_file))
    _handshake(tls.create_context(), certificate)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows: its store and certifi, always")
def test_a_system_without_any_ca_falls_back_to_certifi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_file, empty_dir = tmp_path / "none.pem", tmp_path / "certs"
    empty_file.write_text("")
    empty_dir.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty_dir))
    certifi_only = ssl.create_default_context(cafile=certifi.where())
    assert tls.create_context().cert_store_stats() == certifi_only.cert_store_stats()


@pytest.mark.skipif(sys.platform == "win32", reason="Windows: its store and certifi, always")
@pytest.mark.parametrize(
    ("directories", "system_trust"),
    [
        (["hashed"], True),
        (["empty", "hashed"], True),  # SSL_CERT_DIR lists directories like PATH
        (["readme"], False),  # files, but no certificate names: no trust there
        (["empty"], False),
    ],
)
def test_a_ca_directory_counts_when_it_holds_hashed_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directories: list[str], *, system_trust: bool
) -> None:
    for name, entry in (("hashed", "5ad8a5d6.0"), ("readme", "README"), ("empty", None)):
        (tmp_path / name).mkdir()
        if entry:
            (tmp_path / name / entry).write_text("")
    empty_file = tmp_path / "none.pem"
    empty_file.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_file))
    dirs = os.pathsep.join(str(tmp_path / name) for name in directories)
    monkeypatch.setenv("SSL_CERT_DIR", dirs)
    loaded = tls.create_context().cert_store_stats()["x509_ca"]
    # The directory is read lazily (nothing loaded yet); certifi comes in only without it.
    assert (loaded == 0) is system_trust


@pytest.mark.skipif(sys.platform == "win32", reason="Windows: its store and certifi, always")
def test_an_unreadable_ca_directory_is_no_trust_and_no_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads any directory, so the refusal is simulated where the listing happens.
    def refuse(path: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    empty_file = tmp_path / "none.pem"
    empty_file.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    monkeypatch.setattr(tls.os, "scandir", refuse)
    certifi_only = ssl.create_default_context(cafile=certifi.where())
    assert tls.create_context().cert_store_stats() == certifi_only.cert_store_stats()
