"""Where a job gets its CI's OIDC token for workload identity: one fetcher per CI.

Each platform class names its source (``Platform.ci_identity``); :func:`token_service`
builds it, or says why this job cannot have one. The rules, for every CI:

- The token is a :class:`Secret` from the moment it arrives; the caller masks it before
  any use. It never reaches argv, a file, a log line or a message: what a token service
  answers instead of a token is server text, and enters a message through ``untrusted``
  only (which takes out every live secret, the service's own credential included).
- :meth:`CiTokenService.fetch` mints a fresh token each time, except where the CI gives one
  per job (GitLab's ``id_tokens:``), which ``reused`` says.
- Bounded: each fetch has ``FETCH_BUDGET_S``, over the HTTP base (GitHub, Azure) or as a
  subprocess's timeout (Buildkite).
- A refusal the job can fix (a permission, a variable) is a ConfigError that names the
  fix; a service that fails in transit, or says so (5xx, 429), is a TransientFailure: a poll
  tries again at its next interval.

The sources:

- GitHub: ``GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD`` with ``Authorization: bearer
  $ACTIONS_ID_TOKEN_REQUEST_TOKEN`` answers ``{"value": jwt}``. The runner sets the two
  variables only for a job with ``permissions: id-token: write``.
- GitLab: the job's ``id_tokens:`` variable ``CI_SHARK_ID_TOKEN``, minted once per job with
  the ``aud`` the pipeline declares.
- Buildkite: ``buildkite-agent oidc request-token --audience AUD`` prints one (the audience
  is no secret; the agent's own credential stays in its environment).
- Azure Pipelines: ``POST $SYSTEM_OIDCREQUESTURI?api-version=7.1-preview.1`` with
  ``Authorization: Bearer $SYSTEM_ACCESSTOKEN`` answers ``{"oidcToken": jwt}``, always for
  the audience ``api://AzureADTokenExchange``: it fits a server that takes that audience,
  and no other.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol
from urllib.parse import quote

import httpx

from ci_shark.errors import ConfigError, ProtocolError
from ci_shark.oauth.http import (
    TRANSIENT_STATUSES,
    HttpClient,
    SendFailed,
    TransientFailure,
    first_line,
    json_object,
)
from ci_shark.platforms.buildkite import AGENT
from ci_shark.platforms.common import env_value, find_program
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

if TYPE_CHECKING:
    from ci_shark.platforms.base import Platform

FETCH_BUDGET_S = 15.0
MAX_TOKEN_CHARS = 16 * 1024
MAX_ANSWER_BYTES = 64 * 1024
GITLAB_ID_VARIABLE = "CI_SHARK_ID_TOKEN"
AZURE_AUDIENCE = "api://AzureADTokenExchange"
AZURE_API_VERSION = "7.1-preview.1"
SUPPORTED = "GitHub Actions, GitLab CI/CD, Buildkite and Azure Pipelines (one audience)"
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

Mask = Callable[[Sequence[Secret]], None]


class CiTokenService(Protocol):
    """A CI's OIDC token service, as the job reaches it."""

    reused: bool  # one token per job: every request carries the same one

    def fetch(self, audience: str) -> Secret:
        """A token for ``audience``; raises a CiSharkError that says why not."""

    def close(self) -> None:
        """Release what the service holds (a connection)."""


def token_service(platform: Platform) -> CiTokenService:
    """The token service of the CI this job runs on; ConfigError when it has none."""
    source = platform.ci_identity
    if source is None:
        raise ConfigError(
            f"workload identity is not supported on this CI ({platform.name}): ci_shark "
            f"fetches a CI's OIDC token on {SUPPORTED}",
            hint="turn `workload-identity` off for this job",
        )
    return _SERVICES[source](platform.env, platform.transport, platform.mask)


def as_token(text: str, who: str) -> Secret:
    """``text`` as a token: held as a secret first (redacted from anything said later),
    then checked to be a compact JWS; never quoted when it is not."""
    token = Secret(text.strip())
    if len(token) > MAX_TOKEN_CHARS or not _JWT.fullmatch(token.reveal()):
        raise ProtocolError(f"{who} answered with something that is not a signed JWT")
    return token


# -- over HTTP: GitHub, Azure --------------------------------------------------------------


class _HttpTokenService:
    """A token service on the HTTP base: its URL and its credential from two variables (the
    credential masked at once), one connection for the run, each call bounded."""

    reused = False
    who: ClassVar[str]
    url_variable: ClassVar[str]
    credential_variable: ClassVar[str]
    refused_hint: ClassVar[str]

    def __init__(self, env: Mapping[str, str], transport: httpx.BaseTransport | None, mask: Mask):
        url = env_value(env, self.url_variable)
        credential = env_value(env, self.credential_variable)
        if url is None or credential is None:
            names = (self.url_variable, url), (self.credential_variable, credential)
            missing = [name for name, value in names if value is None]
            verb = "is" if len(missing) == 1 else "are"
            raise self.unavailable(f"{' and '.join(missing)} {verb} not set")
        problem = url_problem(url)
        if problem:
            raise ConfigError(f"{self.url_variable} {problem}")
        self._url = url
        self._credential = Secret(credential)
        mask([self._credential])
        self._transport = transport
        self._http: HttpClient | None = None

    def unavailable(self, not_set: str) -> ConfigError:
        """The job has no token service: ``not_set`` says which variables it lacks."""
        raise NotImplementedError

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _ask(self, method: str, query: str, headers: Mapping[str, str], field: str) -> Secret:
        deadline = time.monotonic() + FETCH_BUDGET_S
        if self._http is None:
            self._http = HttpClient(transport=self._transport, max_body_bytes=MAX_ANSWER_BYTES)
        url = f"{self._url}{'&' if '?' in self._url else '?'}{query}"
        content = b"" if method == "POST" else None
        request = self._http.build(method, url, deadline=deadline, headers=headers, content=content)
        try:
            with self._http.send(request, deadline=deadline) as answer:
                status, raw = answer.response.status_code, answer.body()
        except SendFailed as failure:
            raise TransientFailure(f"{self.who} could not be reached: {failure}") from None
        if status in TRANSIENT_STATUSES:
            raise TransientFailure(f"{self.who} answered HTTP {status}{_said(raw)}")
        if status != 200:
            raise ConfigError(
                f"{self.who} refused the token request (HTTP {status}){_said(raw)}",
                hint=self.refused_hint,
            )
        value = json_object(raw, {}).get(field)
        if not isinstance(value, str):
            raise ProtocolError(f"{self.who} answered without a token ({field})")
        return as_token(value, self.who)


def _said(raw: bytes) -> str:
    """What a refusing service said, as one safe line (its JSON ``message``, else the
    body's first line); "" when nothing."""
    message = json_object(raw, {}).get("message")
    text = untrusted(message, 200) if isinstance(message, str) else first_line(raw, 200)
    return f": {text}" if text else ""


class GitHubTokenService(_HttpTokenService):
    who = "GitHub's OIDC token service"
    url_variable = "ACTIONS_ID_TOKEN_REQUEST_URL"
    credential_variable = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
    refused_hint = (
        "the job needs `permissions:` with `id-token: write` (a pull request from a fork "
        "never gets it); see docs/workload-identity.md"
    )

    def unavailable(self, not_set: str) -> ConfigError:
        return ConfigError(
            "workload identity needs the job's OIDC token, and GitHub gives one only to "
            f"a job with `permissions: id-token: write` ({not_set})",
            hint="add `id-token: write` to the job's `permissions:` (a pull request from "
            "a fork never gets it), or turn `workload-identity` off",
        )

    def fetch(self, audience: str) -> Secret:
        headers = {"Authorization": f"bearer {self._credential.reveal()}"}
        return self._ask("GET", f"audience={quote(audience, safe='')}", headers, "value")


class AzureTokenService(_HttpTokenService):
    who = "Azure Pipelines' OIDC token service"
    url_variable = "SYSTEM_OIDCREQUESTURI"
    credential_variable = "SYSTEM_ACCESSTOKEN"
    refused_hint = (
        "map the job's access token into the step (`env: SYSTEM_ACCESSTOKEN: "
        "$(System.AccessToken)`) and let the pipeline use it"
    )

    def unavailable(self, not_set: str) -> ConfigError:
        return ConfigError(
            f"workload identity on Azure Pipelines asks the job's OIDC request URI for a "
            f"token, and {not_set}",
            hint="map the access token into the step: `env: SYSTEM_ACCESSTOKEN: "
            "$(System.AccessToken)` (SYSTEM_OIDCREQUESTURI comes with the agent)",
        )

    def fetch(self, audience: str) -> Secret:
        if audience != AZURE_AUDIENCE:
            raise ConfigError(
                "workload identity is not supported on this CI (azure) for this server: Azure "
                f"Pipelines issues OIDC tokens for the audience {AZURE_AUDIENCE} only, and "
                f"the server expects {untrusted(audience, 200)}",
                hint=f"set `workload-identity-audience` to {AZURE_AUDIENCE} if your server "
                "accepts that audience; else turn `workload-identity` off",
            )
        headers = {
            "Authorization": f"Bearer {self._credential.reveal()}",
            "Content-Type": "application/json",
        }
        return self._ask("POST", f"api-version={AZURE_API_VERSION}", headers, "oidcToken")


# -- GitLab: the job's id_tokens variable --------------------------------------------------


class GitLabIdToken:
    """The token GitLab minted for the job: read once, the same for every request."""

    reused = True

    def __init__(self, env: Mapping[str, str], transport: httpx.BaseTransport | None, mask: Mask):
        self._value = env_value(env, GITLAB_ID_VARIABLE)
        self._token: Secret | None = None

    def fetch(self, audience: str) -> Secret:
        if self._token is None:
            if self._value is None:
                raise ConfigError(
                    f"workload identity on GitLab reads the job's ID token from "
                    f"{GITLAB_ID_VARIABLE}, and it is not set",
                    hint="declare it in the job, with the server's audience (the templates' "
                    "`.ci-shark-workload-identity` job does):\n"
                    f"  id_tokens:\n    {GITLAB_ID_VARIABLE}:\n      aud: {audience}",
                )
            self._token = as_token(self._value, GITLAB_ID_VARIABLE)
        return self._token

    def close(self) -> None:
        """Nothing held."""


# -- Buildkite: the agent ------------------------------------------------------------------


class BuildkiteTokenService:
    """``buildkite-agent oidc request-token``: a fresh token each time, from stdout."""

    reused = False

    def __init__(self, env: Mapping[str, str], transport: httpx.BaseTransport | None, mask: Mask):
        self._env = dict(env)
        agent = find_program(AGENT, env)
        if agent is None:
            raise ConfigError(
                f"workload identity on Buildkite asks the agent for the token (`{AGENT} oidc "
                f"request-token`), and {AGENT} is not on PATH",
                hint=f"run the step where {AGENT} is available (mount it into the job's "
                "container), or turn `workload-identity` off",
            )
        self._agent = agent

    def fetch(self, audience: str) -> Secret:
        argv = [self._agent, "oidc", "request-token", "--audience", audience]
        try:
            done = subprocess.run(  # noqa: S603 (our argv: the agent, and no secret)
                argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=FETCH_BUDGET_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TransientFailure(
                f"`{AGENT} oidc request-token` did not answer within {FETCH_BUDGET_S:g} s"
            ) from None
        except OSError as failure:
            raise ConfigError(f"could not run {AGENT}: {failure.strerror}") from None
        if done.returncode != 0:
            said = first_line(done.stderr, 200)
            raise TransientFailure(
                f"`{AGENT} oidc request-token` failed (exit {done.returncode})"
                + (f": {said}" if said else "")
            )
        return as_token(done.stdout[:MAX_ANSWER_BYTES].decode("utf-8", "replace"), AGENT)

    def close(self) -> None:
        """Nothing held."""


_SERVICES: dict[
    str, Callable[[Mapping[str, str], httpx.BaseTransport | None, Mask], CiTokenService]
] = {
    "github": GitHubTokenService,
    "gitlab": GitLabIdToken,
    "buildkite": BuildkiteTokenService,
    "azure": AzureTokenService,
}
