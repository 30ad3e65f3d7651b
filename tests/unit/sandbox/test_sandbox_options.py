"""The sandbox options a person trying ci_shark by hand reaches for (issue 23): only the
registered client ids, one log line per request, and every default in ``--help``."""

from __future__ import annotations

import dataclasses
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.sandbox_client import CLIENT_ID, Client, error_of

from ci_shark.sandbox import DEVICE_CODE_GRANT_TYPE, SandboxOptions, SandboxServer
from ci_shark.sandbox.options import argument_parser, keywords_from_argv

# --------------------------------------------------------------------------- --client-id


def test_client_id_flags_gather_every_id_given() -> None:
    argv = ["--client-id", "ci-deploy", "--client-id", "ci-release, ci-docs"]
    assert keywords_from_argv(argv) == {"client_ids": ["ci-deploy", "ci-release", "ci-docs"]}


def test_an_unlisted_client_is_refused_as_an_unregistered_one(http: httpx.Client) -> None:
    with SandboxServer(client_ids=["ci-deploy"]) as server:
        refused = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID})
        assert refused.status_code == 401
        assert error_of(refused) == "invalid_client"
        assert server.grants == ()  # refused before any device code exists
        token = http.post(
            f"{server.url}/oauth/token",
            data={"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": "x", "client_id": "x"},
        )
        assert (token.status_code, error_of(token)) == (401, "invalid_client")


def test_listed_and_confidential_clients_are_served(http: httpx.Client) -> None:
    options = {"client_ids": [CLIENT_ID], "client_secrets": {"ci-confidential": "s3cret"}}
    with SandboxServer(**options) as server:  # type: ignore[arg-type]
        Client(server, http).device()  # CLIENT_ID: listed
        confidential = http.post(
            f"{server.url}/oauth/device",
            data={"client_id": "ci-confidential", "client_secret": "s3cret"},
        )
        assert confidential.status_code == 200, confidential.text


def test_without_client_ids_any_client_id_is_a_public_client(http: httpx.Client) -> None:
    with SandboxServer() as server:
        answer = http.post(f"{server.url}/oauth/device", data={"client_id": "anything-at-all"})
        assert answer.status_code == 200


def test_an_empty_client_id_is_not_an_option() -> None:
    with pytest.raises(ValueError, match="client_ids"):
        SandboxOptions(client_ids=[" "])


# --------------------------------------------------------------------------- the request log


def raw_get(server: SandboxServer, path: bytes) -> None:
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), 2) as raw:
        raw.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 404")


LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (\S+) (\S+) (\S+) (\S+)")


def test_one_line_per_request_without_query_or_secrets(http: httpx.Client) -> None:
    lines: list[str] = []
    with SandboxServer(request_log=lines.append, approve_on_open=False) as server:
        client = Client(server, http)
        device = client.device()
        http.get(f"{server.url}/device", params={"user_code": device["user_code"]})
        client.poll(device["device_code"])
        raw_get(server, b"/nowhere\x1b[31m\xc3\xa9")  # httpx would refuse to send it

    fields = [LOG_LINE.fullmatch(line) for line in lines]
    assert all(fields), lines
    assert [match.groups() for match in fields if match] == [
        ("POST", "/oauth/device", "200", "issued"),
        ("GET", "/device", "200", "page"),
        ("POST", "/oauth/token", "400", "authorization_pending"),
        (
            "GET",
            "/nowhere%1B%5B31m%C3%83%C2%A9",
            "404",
            "not_found",
        ),  # no escape reaches a terminal
    ]
    logged = "\n".join(lines)
    for secret in (device["device_code"], device["user_code"], client.nonce or "?"):
        assert secret not in logged


def test_the_standalone_server_logs_to_stderr(http: httpx.Client, tmp_path: Path) -> None:
    """Its URL alone on stdout (scripts read that line), the request log on stderr."""
    log_path = tmp_path / "stderr"
    with log_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ci_shark.sandbox", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().removeprefix("ci_shark sandbox listening on ").strip()
            http.get(f"{url}/.well-known/oauth-authorization-server")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert process.stdout.read() == ""
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
    (line,) = log_path.read_text().splitlines()
    assert re.fullmatch(
        r"ci_shark sandbox: \d\d:\d\d:\d\d GET /.well-known/oauth-authorization-server 200 "
        r"metadata",
        line,
    )


# --------------------------------------------------------------------------- --help


def test_help_shows_the_default_of_every_flag_that_takes_a_value() -> None:
    help_text = " ".join(argument_parser().format_help().split())  # argparse wraps lines
    for option in dataclasses.fields(SandboxOptions):
        flag = option.metadata.get("flag")
        if flag is None or flag.const is not None:  # a switch: its default is "not given"
            continue
        default = flag.default_text or (
            "none" if option.default in (None, ()) else str(option.default)
        )
        assert f"{flag.help} (default: {default})" in help_text, flag.name
    assert "(default: 600)" in help_text  # --expires-in, read from the field
    assert "(default: any client id)" in help_text
