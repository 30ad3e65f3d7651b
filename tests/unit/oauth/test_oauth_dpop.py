"""DPoP proofs (RFC 9449) and key handling, checked with joserfc, an independent JOSE library."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey

from ci_shark.errors import ConfigError
from ci_shark.oauth.dpop import DPoPKey, DPoPProver, access_token_hash, htu_of
from ci_shark.secret import Secret

TOKEN_URL = "https://as.example/oauth/token"


def decode(proof: str, key: DPoPKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, after joserfc verified the signature with the proof's own jwk."""
    header_b64 = proof.split(".", maxsplit=1)[0]
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    verified = jws.deserialize_compact(proof, ECKey.import_key(header["jwk"]), algorithms=["ES256"])
    assert header["jwk"] == key.public_jwk
    return dict(verified.protected), json.loads(verified.payload)


def b64url_sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_proof_header() -> None:
    key = DPoPKey.generate()
    header, _ = decode(key.proof("POST", TOKEN_URL), key)

    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # public only: no "d"
    assert header["jwk"]["kty"] == "EC"
    assert header["jwk"]["crv"] == "P-256"


def test_proof_claims() -> None:
    key = DPoPKey.generate()
    before = int(time.time())
    _, claims = decode(key.proof("post", TOKEN_URL + "?x=1#frag"), key)

    assert claims["htm"] == "POST"
    assert claims["htu"] == TOKEN_URL  # RFC 9449 §4.2: no query, no fragment
    assert before <= claims["iat"] <= int(time.time()) + 1
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert "nonce" not in claims
    assert "ath" not in claims


# RFC 9449 §4.2: the target URI as the request goes out, without query and fragment; a
# server that compares strings (§4.3 only asks it to normalise) computes this form.
WIRE_FORMS = [
    ("HTTPS://API.Example.COM/deploy?x=1#f", "https://api.example.com/deploy"),
    ("https://api.example.com:443/deploy", "https://api.example.com/deploy"),
    ("http://127.0.0.1:80/a", "http://127.0.0.1/a"),
    ("https://api.example.com:8443/a", "https://api.example.com:8443/a"),
    ("https://api.example.com/a/./b/../c", "https://api.example.com/a/c"),
    ("https://api.example.com", "https://api.example.com/"),
    ("https://api.example.com?page=2", "https://api.example.com/"),
    ("https://[::1]:443/x", "https://[::1]/x"),
    ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
    ("https://api.example.com/a%7e b", "https://api.example.com/a%7e%20b"),
    # Userinfo is no part of the target URI (RFC 9110 §7.1, §4.2.4): never in a proof.
    ("https://user:pass@api.example.com/deploy", "https://api.example.com/deploy"),
    ("https://user@api.example.com:8443/a", "https://api.example.com:8443/a"),
]


@pytest.mark.parametrize(("url", "wire"), WIRE_FORMS)
def test_htu_is_the_target_uri_as_the_request_goes_out(url: str, wire: str) -> None:
    assert htu_of(url) == wire


@pytest.mark.parametrize(("url", "wire"), WIRE_FORMS)
def test_a_proof_names_the_url_httpx_sends(url: str, wire: str) -> None:
    """`request`, the proxy and session() sign ``str(request.url)`` (httpx's form); a proof
    for the URL as the user wrote it (`proof --url`) names the same target."""
    key = DPoPKey.generate()
    sent = httpx.Request("GET", url)
    assert decode(key.proof("GET", url), key)[1]["htu"] == wire
    assert decode(key.proof("GET", str(sent.url)), key)[1]["htu"] == wire


def test_a_url_no_request_can_go_to_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not a valid URL"):
        DPoPKey.generate().proof("GET", "https://api.example.com:port/")


def test_proof_iat_follows_the_given_time() -> None:
    key = DPoPKey.generate()
    _, claims = decode(key.proof("GET", TOKEN_URL, now=1_700_000_000.7), key)
    assert claims["iat"] == 1_700_000_000


def test_every_proof_has_a_fresh_jti() -> None:
    key = DPoPKey.generate()
    jtis = {decode(key.proof("POST", TOKEN_URL), key)[1]["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_proof_carries_the_nonce_and_ath() -> None:
    key = DPoPKey.generate()
    proof = key.proof(
        "GET", "https://api.example/deploy", nonce="n-1", access_token=Secret("at-xyz")
    )
    _, claims = decode(proof, key)

    assert claims["nonce"] == "n-1"
    assert claims["ath"] == b64url_sha256("at-xyz")
    assert access_token_hash("at-xyz") == b64url_sha256("at-xyz")
    assert "at-xyz" not in proof


def test_make_proof_sdk_spelling() -> None:
    key = DPoPProver.generate()
    _, claims = decode(key.make_proof(htm="GET", htu=TOKEN_URL, access_token="t", nonce="n"), key)
    assert (claims["htm"], claims["nonce"], claims["ath"]) == ("GET", "n", b64url_sha256("t"))


def test_signature_verification_fails_with_another_key() -> None:
    key = DPoPKey.generate()
    other = ECKey.import_key(DPoPKey.generate().public_jwk)
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(key.proof("POST", TOKEN_URL), other, algorithms=["ES256"])


def test_proof_signature_is_raw_r_s_not_der() -> None:
    signature = DPoPKey.generate().proof("POST", TOKEN_URL).split(".")[2]
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


def test_thumbprint_matches_joserfc() -> None:
    for _ in range(5):
        key = DPoPKey.generate()
        assert key.jkt == ECKey.import_key(key.public_jwk).thumbprint()
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key.jkt)


def test_thumbprint_rfc7638_of_a_known_key() -> None:
    # A key generated by joserfc, thumbprinted by joserfc, loaded into ci_shark.
    theirs = ECKey.generate_key("P-256", private=True)
    ours = DPoPKey.from_jwk(theirs.as_dict(private=True))
    assert ours.jkt == theirs.thumbprint()
    assert ours.public_jwk == {
        name: value for name, value in theirs.as_dict(private=False).items() if name != "kid"
    }


def test_pem_round_trip() -> None:
    key = DPoPKey.generate()
    pem = key.private_pem()

    assert isinstance(pem, Secret)
    assert pem.reveal().startswith("-----BEGIN PRIVATE KEY-----")
    assert DPoPKey.from_pem(pem.reveal()).jkt == key.jkt
    assert DPoPKey.from_pem(pem.reveal().encode()).jkt == key.jkt
    assert DPoPKey.load(pem.reveal()).jkt == key.jkt


def test_the_sdks_private_key_pem_is_pkcs8_bytes_that_load_back() -> None:
    key = DPoPKey.generate()
    pem = key.private_key_pem()

    assert isinstance(pem, bytes)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert DPoPKey.from_pem(pem).jkt == key.jkt
    assert pem == key.private_pem().reveal().encode()
    assert repr(pem) == str(pem) == "b'***'"  # printing it by accident shows nothing
    assert f"{[pem]}" == "[b'***']"


def test_an_encrypted_pem_loads_with_its_password_only() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    locked = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )
    assert DPoPKey.from_pem(locked, password=b"correct horse").jkt == DPoPKey(private).jkt
    for password in (None, b"wrong"):
        with pytest.raises(ConfigError) as refused:
            DPoPKey.from_pem(locked, password=password)
        assert "password" in refused.value.diagnostics()
        assert "correct horse" not in refused.value.diagnostics()


def test_make_proof_takes_the_sdks_test_overrides() -> None:
    key = DPoPKey.generate()
    _, claims = decode(key.make_proof("GET", TOKEN_URL, iat=1_700_000_000, jti="fixed"), key)
    assert (claims["iat"], claims["jti"]) == (1_700_000_000, "fixed")
    with pytest.raises(TypeError):
        key.make_proof("GET", TOKEN_URL, "a-token")  # type: ignore[misc]  # keywords, as the SDK


def test_sec1_pem_is_accepted() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    sec1 = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert sec1.startswith("-----BEGIN EC PRIVATE KEY-----")
    assert DPoPKey.from_pem(sec1).jkt == DPoPKey(private).jkt


def test_jwk_round_trip() -> None:
    key = DPoPKey.generate()
    jwk = key.private_jwk()

    assert isinstance(jwk, Secret)
    fields = json.loads(jwk.reveal())
    assert set(fields) == {"kty", "crv", "x", "y", "d"}
    assert "\n" not in jwk.reveal()  # one line, for SHARK_DPOP_JWK
    assert DPoPKey.from_jwk(jwk.reveal()).jkt == key.jkt
    assert DPoPKey.from_jwk(fields).jkt == key.jkt
    assert DPoPKey.load("  " + jwk.reveal()).jkt == key.jkt
    # and joserfc reads it as the same private key
    assert ECKey.import_key(fields).thumbprint() == key.jkt


def test_loaded_key_signs_proofs_that_verify() -> None:
    key = DPoPKey.load(DPoPKey.generate().private_pem().reveal())
    header, _ = decode(key.proof("POST", TOKEN_URL), key)
    assert ECKey.import_key(header["jwk"]).thumbprint() == key.jkt


def test_repr_shows_only_the_thumbprint() -> None:
    key = DPoPKey.generate()
    text = repr(key)
    assert key.jkt in text
    assert json.loads(key.private_jwk().reveal())["d"] not in text


def _pem(private_key: Any) -> str:
    pem: bytes = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


def _key_material(pem: str) -> list[str]:
    """Chunks of the base64 body: none may appear in an error message."""
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return [body[i : i + 12] for i in range(0, len(body) - 12, 12)]


def _assert_no_key_material(error: ConfigError, pem: str) -> None:
    text = f"{error.diagnostics()} {error!r} {error.args}"
    leaked = [chunk for chunk in _key_material(pem) if chunk in text]
    assert leaked == []


@pytest.mark.parametrize(
    "private_key",
    [
        pytest.param(ec.generate_private_key(ec.SECP384R1()), id="P-384"),
        pytest.param(ec.generate_private_key(ec.SECP256K1()), id="secp256k1"),
        pytest.param(rsa.generate_private_key(public_exponent=65537, key_size=2048), id="RSA"),
    ],
)
def test_wrong_key_types_are_config_errors_without_key_material(private_key: Any) -> None:
    pem = _pem(private_key)
    with pytest.raises(ConfigError) as caught:
        DPoPKey.load(pem)
    assert caught.value.exit_code == 2
    assert "P-256" in caught.value.diagnostics()
    _assert_no_key_material(caught.value, pem)


def test_wrong_curve_jwk_is_a_config_error_without_key_material() -> None:
    jwk = ECKey.generate_key("P-384", private=True).as_dict(private=True)
    with pytest.raises(ConfigError) as caught:
        DPoPKey.from_jwk(jwk)
    assert caught.value.exit_code == 2
    assert str(jwk["d"]) not in caught.value.diagnostics()


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PRIVATE KEY-----\n"
        "TUFURVJJQUwtU0VDUkVULWNhbmFyeQ==\n"
        "-----END PRIVATE KEY-----\n",
        "not a key at all MATERIAL-SECRET-canary",
        '{"kty":"EC","crv":"P-256","d":"MATERIAL-SECRET-canary"}',
        '{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"MATERIAL-SECRET-canary"}',
        "{not json MATERIAL-SECRET-canary",
    ],
)
def test_unreadable_keys_never_echo_the_input(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DPoPKey.load(text)
    assert caught.value.exit_code == 2
    message = caught.value.diagnostics()
    assert "canary" not in message
    assert "TUFURVJJQUwtU0VDUkVULWNhbmFyeQ" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_jwk_whose_d_does_not_match_xy_is_refused() -> None:
    a = json.loads(DPoPKey.generate().private_jwk().reveal())
    b = json.loads(DPoPKey.generate().private_jwk().reveal())
    with pytest.raises(ConfigError):
        DPoPKey.from_jwk({**a, "d": b["d"]})


def test_encrypted_pem_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    with pytest.raises(ConfigError) as caught:
        DPoPKey.from_pem(pem)
    _assert_no_key_material(caught.value, pem)
