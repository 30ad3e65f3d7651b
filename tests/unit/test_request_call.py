"""`ci-shark request`'s defaults, as curl has them: built once, in request.build_call."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ci_shark.errors import ConfigError
from ci_shark.request import Call, build_call


def call(
    tmp: Path,
    *headers: str,
    method: str | None = None,
    data: str | None = None,
    json_data: str | None = None,
    stdin: bytes = b"",
) -> Call:
    built = build_call(
        "https://api.test/deploy",
        method=method,
        headers=headers,
        data=data,
        json_data=json_data,
        output=tmp / "reply",
        max_time_s=30.0,
        stdin=io.BytesIO(stdin),
    )
    built.output.close()
    return built


def test_no_body_is_a_get_with_no_content_type(tmp_path: Path) -> None:
    built = call(tmp_path)
    assert (built.method, built.body, built.headers) == ("GET", None, [])


def test_data_is_a_form_post(tmp_path: Path) -> None:
    built = call(tmp_path, data="a=1&b=2")
    assert (built.method, built.body) == ("POST", b"a=1&b=2")
    assert built.headers == [("Content-Type", "application/x-www-form-urlencoded")]


def test_json_sets_content_type_and_accept(tmp_path: Path) -> None:
    built = call(tmp_path, json_data="@-", stdin=b'{"ref": "v1"}')
    assert (built.method, built.body) == ("POST", b'{"ref": "v1"}')
    assert built.headers == [("Content-Type", "application/json"), ("Accept", "application/json")]


def test_the_callers_headers_and_method_win(tmp_path: Path) -> None:
    built = call(tmp_path, "content-type: text/plain", "Accept: */*", method="put", json_data="{}")
    assert built.method == "PUT"
    assert built.headers == [("content-type", "text/plain"), ("Accept", "*/*")]


def test_a_bad_header_leaves_the_output_file_alone(tmp_path: Path) -> None:
    kept = tmp_path / "reply"
    kept.write_bytes(b"the last answer")
    with pytest.raises(ConfigError, match="-H number 1"):
        call(tmp_path, "no colon here", data="x")
    assert kept.read_bytes() == b"the last answer"


def test_the_output_file_is_private(tmp_path: Path) -> None:
    call(tmp_path)
    assert (tmp_path / "reply").stat().st_mode & 0o777 == 0o600
