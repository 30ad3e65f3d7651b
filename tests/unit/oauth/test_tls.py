"""The TLS context: preloaded once on a thread, replaced by an explicit CA bundle."""

from __future__ import annotations

import ssl

import certifi

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
