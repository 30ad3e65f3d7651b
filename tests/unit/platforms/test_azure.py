"""AzurePlatform, judged by the ``##vso`` lines it prints, parsed the way the agent parses."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ci_shark.errors import PolicyRefused
from ci_shark.platforms import detect
from ci_shark.platforms.azure import AzurePlatform, escape_data, escape_property, vso
from ci_shark.render import Outcome
from ci_shark.secret import Secret

from .platform_fakes import (
    ACCESS_TOKEN,
    DEVICE_CODE,
    REFRESH_TOKEN,
    Streams,
    credentials,
    enforce_policy,
    request,
    settings,
)

ENV = {
    "TF_BUILD": "True",
    "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/",
    "SYSTEM_TEAMPROJECT": "Shop",
    "BUILD_BUILDID": "77",
    "BUILD_REPOSITORY_NAME": "acme/shop",
    "BUILD_DEFINITIONNAME": "release",
    "SYSTEM_JOBDISPLAYNAME": "deploy",
    "BUILD_SOURCEVERSION": "0123456789abcdef0123456789abcdef01234567",
    "BUILD_REQUESTEDFOR": "Maria",
}
COMMAND = re.compile(r"##vso\[(?P<command>[\w.]+)(?: (?P<props>[^\]]*))?\](?P<message>.*)")


def unescape(text: str) -> str:
    """What the agent does to a message or property value."""
    for escaped, raw in (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]")):
        text = text.replace(escaped, raw)
    return text.replace("%AZP25", "%")


def commands(text: str) -> list[tuple[str, dict[str, str], str]]:
    """Every ``##vso`` command in the output, as the agent sees it (first one per line)."""
    found = []
    for line in text.splitlines():
        match = COMMAND.search(line)
        if match:
            props = dict(
                (key, unescape(value))
                for key, _, value in (
                    item.partition("=") for item in (match["props"] or "").split(";") if item
                )
            )
            found.append((match["command"], props, unescape(match["message"])))
    return found


def platform(streams: Streams, env: dict[str, str] | None = None, **values: Any) -> AzurePlatform:
    return AzurePlatform(settings(**values), env or ENV, **streams.kwargs())


def test_detected_by_tf_build() -> None:
    assert detect({"TF_BUILD": "True"}) is AzurePlatform


def test_context() -> None:
    context = platform(Streams()).context()
    assert context.run_url == "https://dev.azure.com/acme/Shop/_build/results?buildId=77"
    assert context.repository == "acme/shop"
    assert context.workflow == "release"
    assert context.job == "deploy"
    assert context.actor == "Maria"


def test_fork_pull_request_refused() -> None:
    env = {**ENV, "SYSTEM_PULLREQUEST_ISFORK": "True", "SYSTEM_PULLREQUEST_PULLREQUESTID": "9"}
    azure = platform(Streams(), env)
    context = azure.context()
    assert context.change_request == "PR #9"
    with pytest.raises(PolicyRefused):
        enforce_policy(azure, context)
    enforce_policy(platform(Streams(), env, allow_fork=True), context)


def test_setsecret_for_each_secret_and_each_line_of_a_multiline_one() -> None:
    streams = Streams()
    azure = platform(streams)
    creds = credentials()
    azure.mask([Secret(DEVICE_CODE), *creds.secrets()])
    masked = [message for command, _, message in commands(streams.stdout.getvalue())]
    assert {name for name, _, _ in commands(streams.stdout.getvalue())} == {"task.setsecret"}
    assert DEVICE_CODE in masked
    assert ACCESS_TOKEN in masked
    assert REFRESH_TOKEN in masked
    pem = creds.dpop_key.private_pem().reveal() if creds.dpop_key else ""
    assert all(line in masked for line in pem.splitlines())
    # one command per line: a multi-line value never spills raw lines into the log
    assert all(line.startswith("##vso[") for line in streams.stdout.getvalue().splitlines())


def test_exports_are_variables_secret_ones_with_issecret(tmp_path: Path) -> None:
    streams = Streams()
    azure = platform(streams, output_file=str(tmp_path / "ci-shark.env"))
    exported = azure.export(credentials())
    variables = {
        props["variable"]: (props.get("issecret"), message)
        for command, props, message in commands(streams.stdout.getvalue())
        if command == "task.setvariable"
    }
    assert variables["SHARK_ACCESS_TOKEN"] == ("true", ACCESS_TOKEN)
    assert variables["SHARK_REFRESH_TOKEN"] == ("true", REFRESH_TOKEN)
    assert variables["SHARK_DPOP_JWK"][0] == "true"
    assert variables["SHARK_TOKEN_TYPE"] == (None, "DPoP")
    assert variables["SHARK_DPOP_KEY_FILE"] == (None, exported.dpop_key_file)
    assert variables["SHARK_STATUS"] == (None, "approved")
    assert (tmp_path / "ci-shark.env").exists()
    assert ACCESS_TOKEN not in streams.stderr.getvalue()


def test_untrusted_values_cannot_add_commands(tmp_path: Path) -> None:
    streams = Streams()
    azure = platform(streams, output_file=str(tmp_path / "out.json"), output_format="json")
    creds = credentials()
    evil_scope = "read%0A##vso[task.setvariable variable=PATH]/evil;x]y"
    creds = replace(creds, tokens=replace(creds.tokens, scope=evil_scope))
    azure.export(creds)
    found = commands(streams.stdout.getvalue())
    assert all(props.get("variable") != "PATH" for _, props, _ in found)
    scope = [message for _, props, message in found if props.get("variable") == "SHARK_SCOPE"]
    assert scope == [evil_scope]  # round-trips exactly, including the literal %0A


def test_escaping_rules() -> None:
    assert escape_data("a%b\r\nc") == "a%AZP25b%0D%0Ac"
    assert escape_property("x;y]z") == "x%3By%5Dz"
    assert vso("task.setvariable", "v\n", variable="N") == "##vso[task.setvariable variable=N]v%0A"


def test_server_text_in_the_log_is_not_a_command() -> None:
    streams = Streams()
    azure = platform(streams)
    approval = request(azure.context(), user_code="##vso[task.setvariable variable=X]1")
    azure.announce(approval)
    assert commands(streams.stderr.getvalue()) == []


def test_warnings_are_logissue_commands() -> None:
    streams = Streams()
    platform(streams).warn("the link ##vso[task.complete result=Failed]\nsecond line")
    found = commands(streams.stdout.getvalue())
    assert len(found) == 1
    command, props, message = found[0]
    assert (command, props["type"]) == ("task.logissue", "warning")
    assert "\n" not in message
    assert "##vso" not in message


def test_waiting_is_a_group_and_the_outcome_is_a_summary(tmp_path: Path) -> None:
    streams = Streams()
    azure = platform(streams, {**ENV, "AGENT_TEMPDIRECTORY": str(tmp_path)})
    approval = request(azure.context())
    azure.announce(approval)
    azure.finish(Outcome("denied", "the approver denied the request"), approval)
    log = streams.stderr.getvalue()
    assert log.index("WDJB") < log.index("##[group]") < log.index("##[endgroup]")
    summaries = [m for c, _, m in commands(streams.stdout.getvalue()) if c == "task.uploadsummary"]
    assert len(summaries) == 1
    summary = Path(summaries[0]).read_text()
    assert "Denied" in summary
    assert "WDJB" not in summary


def test_shell_output_keeps_stdout_for_eval() -> None:
    streams = Streams()
    azure = platform(streams, output_format="shell")
    azure.mask([Secret(ACCESS_TOKEN)])
    azure.export(credentials())
    stdout = streams.stdout.getvalue()
    assert all(line.startswith("export SHARK_") for line in stdout.splitlines())
    assert any(c == "task.setsecret" for c, _, _ in commands(streams.stderr.getvalue()))
