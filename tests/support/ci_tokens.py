"""CI OIDC tokens made by hand with joserfc, independent of the sandbox's own JOSE code (a
bug in one cannot hide a bug in the other): an issuer's keys and GitHub-shaped tokens, and
the forgeries a server must refuse (alg none, HS256 keyed with the public key, a payload
swapped under a valid signature). Every verifier of the tests (the sandbox, oidc-provider)
is held to the same bad tokens (:func:`bad_ci_tokens`) and the same refusal
(:func:`assert_invalid_client`); :func:`signed_by` finds a CI token in what a job printed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

    from ci_shark.sandbox import FakeCiIssuer

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def github_run(repository: str = "octo/app", ref: str = "refs/heads/main") -> dict[str, Any]:
    """The claims GitHub puts in a push run's token (a representative subset)."""
    return {
        "sub": f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "repository_owner": repository.partition("/")[0],
        "ref": ref,
        "ref_type": "branch",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "workflow": "Deploy",
        "workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
        "run_id": "1234",
        "run_attempt": "1",
        "actor": "octocat",
        "event_name": "push",
    }


class CiKeys:
    """A CI issuer's signing key (RS256 or ES256) and the tokens it signs."""

    def __init__(
        self, issuer: str = GITHUB_ISSUER, alg: Literal["RS256", "ES256"] = "RS256"
    ) -> None:
        self.issuer = issuer
        self.alg = alg
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        parameters = {"kid": kid, "alg": alg, "use": "sig"}
        self.key: RSAKey | ECKey = (
            RSAKey.generate_key(2048, parameters=parameters)
            if alg == "RS256"
            else ECKey.generate_key("P-256", parameters=parameters)
        )
        self.kid = kid

    def public_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def token(
        self,
        audience: Any,
        *,
        now: float | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A fresh token (new jti) for ``audience``; ``claims`` override, None removes."""
        issued = int(time.time() if now is None else now)
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "jti": str(uuid.uuid4()),
            "iat": issued,
            "nbf": issued,
            "exp": issued + 300,
            **github_run(),
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        jws_header = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **(header or {})}
        return jwt.encode(jws_header, payload, self.key)


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload), signature


def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def tampered(token: str, **claims: Any) -> str:
    """The same header and signature over a payload with ``claims`` changed."""
    header, payload, signature = parts(token)
    return f"{_segment(header)}.{_segment({**payload, **claims})}.{signature}"


def unsigned(token: str) -> str:
    """``alg: none`` with the same claims and an empty signature."""
    header, payload, _ = parts(token)
    return f"{_segment({**header, 'alg': 'none'})}.{_segment(payload)}."


def hmac_confused(token: str, secret: bytes) -> str:
    """HS256 over the same claims keyed with ``secret`` (say, the issuer's public key): the
    algorithm-confusion attack a verifier that trusts the header's alg falls for."""
    header, payload, _ = parts(token)
    signing_input = f"{_segment({**header, 'alg': 'HS256'})}.{_segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def fetch_github_token(http: httpx.Client, environment: dict[str, str], audience: str) -> str:
    """What a GitHub job's token fetcher does: GET the request URL with ``&audience=`` and the
    request token as a bearer; the answer is ``{"value": jwt}``."""
    url = environment["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=" + quote(audience, safe="")
    bearer = environment["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    response = http.get(url, headers={"Authorization": f"bearer {bearer}"})
    assert response.status_code == 200, response.text
    return str(response.json()["value"])


def signed_by(issuer_url: str, text: str) -> list[str]:
    """The JWTs in ``text`` whose ``iss`` is ``issuer_url`` (a mask command's included)."""
    found = []
    for word in re.findall(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", text):
        try:
            claims = parts(word)[1]
        except ValueError:
            continue
        if claims.get("iss") == issuer_url:
            found.append(word)
    return found


def assert_invalid_client(response: httpx.Response, token: str, reason: str) -> None:
    """A 401 ``invalid_client`` whose description matches ``reason`` (a regular
    expression), and that quotes neither ``token`` nor any part of it."""
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    description = response.json()["error_description"]
    assert re.search(reason, description), description
    for segment in token.split("."):
        assert not segment or segment not in response.text


MakeToken = Callable[["FakeCiIssuer", str], str]  # (the trusted issuer, the audience) -> a token


def _hs256_confused(issuer: FakeCiIssuer, audience: str) -> str:
    jwk = httpx.get(issuer.jwks_url).json()["keys"][0]
    return hmac_confused(issuer.mint(audience), RSAKey.import_key(jwk).as_pem(private=False))


# The CI tokens a server that trusts the issuer for octo/app's branches must refuse, by case.
BAD_CI_TOKENS: dict[str, MakeToken] = {
    "wrong-aud": lambda issuer, aud: issuer.mint("https://github.com/octo"),
    "other-audiences-too": lambda issuer, aud: issuer.mint([aud, "https://vault.example"]),
    "expired": lambda issuer, aud: issuer.mint(
        aud, iat=1_700_000_000, nbf=1_700_000_000, exp=1_700_000_300
    ),
    "tampered": lambda issuer, aud: tampered(issuer.mint(aud), sha="0" * 40),
    "repository-not-allowed": lambda issuer, aud: issuer.mint(aud, repository="mallory/app"),
    "ref-not-allowed": lambda issuer, aud: issuer.mint(aud, ref="refs/tags/v1"),
    "alg-none": lambda issuer, aud: unsigned(issuer.mint(aud)),
    "hs256-confusion": _hs256_confused,
    "another-key": lambda issuer, aud: CiKeys(issuer=issuer.url).token(
        aud, header={"kid": issuer.kid}
    ),
    "another-issuer": lambda issuer, aud: CiKeys().token(aud),
}


def bad_ci_tokens(reasons: Mapping[str, str]) -> list[ParameterSet]:
    """``(make, reason)`` parameters for the cases of :data:`BAD_CI_TOKENS` that
    ``reasons`` names, each with the refusal (a regular expression) its verifier gives."""
    return [pytest.param(BAD_CI_TOKENS[case], reason, id=case) for case, reason in reasons.items()]
