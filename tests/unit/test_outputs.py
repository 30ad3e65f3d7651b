"""What a successful run writes down: dotenv, shell, json; files 0600, all or none."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from support.clock import FakeClock

from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.tokens import parse_token_response
from ci_shark.outputs import (
    Credentials,
    PlannedFile,
    check_writable,
    locked_beside,
    new_key_file_path,
    private_directory,
    read_credentials,
    render_dotenv,
    render_json,
    render_shell,
    reveal,
    rewrite_credentials,
    write_all,
)
from ci_shark.secret import Secret

RECEIVED_AT = 1_700_000_000.0


def credentials(**token_fields: object) -> Credentials:
    body: dict[str, object] = {
        "access_token": "at-abc.def",
        "token_type": "DPoP",
        "expires_in": 3600,
        "scope": "deploy read",
        "refresh_token": "rt-123",
    }
    body.update(token_fields)
    tokens = parse_token_response(body, now=RECEIVED_AT)
    return Credentials(
        tokens=tokens,
        dpop_key=DPoPKey.generate(),
        dpop_key_file="/tmp/ci-shark-dpop-x.pem",
        approver="octocat",
        auth_url="https://as.example",
        client_id="ci-deploy",
        token_endpoint="https://as.example/token",
        client_auth="client_secret_post",
    )


def test_named_outputs_follow_the_spec() -> None:
    creds = credentials()
    values = {name: reveal(value) for name, value in creds.named().items()}

    assert creds.dpop_key is not None
    assert values == {
        "SHARK_ACCESS_TOKEN": "at-abc.def",
        "SHARK_TOKEN_TYPE": "DPoP",
        "SHARK_EXPIRES_IN": "3600",
        "SHARK_EXPIRES_AT": "2023-11-14T23:13:20Z",
        "SHARK_SCOPE": "deploy read",
        "SHARK_REFRESH_TOKEN": "rt-123",
        "SHARK_ID_TOKEN": "",
        "SHARK_DPOP_JKT": creds.dpop_key.jkt,
        "SHARK_DPOP_JWK": creds.dpop_key.private_jwk().reveal(),
        "SHARK_DPOP_KEY_FILE": "/tmp/ci-shark-dpop-x.pem",
        "SHARK_STATUS": "approved",
        "SHARK_APPROVER": "octocat",
        "SHARK_AUTH_URL": "https://as.example",  # where refresh and revoke go later
        "SHARK_CLIENT_ID": "ci-deploy",
        "SHARK_TOKEN_ENDPOINT": "https://as.example/token",  # the ones the login used
        "SHARK_REVOCATION_ENDPOINT": "",  # unknown: found again when revoking
        "SHARK_CLIENT_AUTH": "client_secret_post",  # how refresh and revoke authenticate
        "SHARK_WORKLOAD_IDENTITY_AUDIENCE": "",  # no workload identity: no audience
    }
    assert isinstance(creds.named()["SHARK_ACCESS_TOKEN"], Secret)
    assert isinstance(creds.named()["SHARK_DPOP_JWK"], Secret)


def test_secrets_lists_every_secret_value() -> None:
    creds = credentials(id_token="idt-1")
    assert creds.dpop_key is not None
    revealed = {secret.reveal() for secret in creds.secrets()}
    assert revealed == {
        "at-abc.def",
        "rt-123",
        "idt-1",
        creds.dpop_key.private_pem().reveal(),
        creds.dpop_key.private_jwk().reveal(),
        json.loads(creds.dpop_key.private_jwk().reveal())["d"],  # jq prints it alone
    }


def test_bearer_token_without_key() -> None:
    tokens = parse_token_response({"access_token": "a", "token_type": "bearer"}, now=0)
    creds = Credentials(tokens=tokens, dpop_key=None, dpop_key_file=None)
    named = creds.named()
    assert named["SHARK_TOKEN_TYPE"] == "Bearer"
    assert named["SHARK_DPOP_JKT"] == named["SHARK_DPOP_JWK"] == ""
    assert named["SHARK_EXPIRES_IN"] == named["SHARK_EXPIRES_AT"] == ""
    assert [secret.reveal() for secret in creds.secrets()] == ["a"]


# -- renderings ----------------------------------------------------------------------------

HOSTILE = {
    "PLAIN": "abc",
    "SPACES": "deploy read write",
    "QUOTES": 'it\'s "quoted"',
    "SUBST": "$(touch pwned) `touch pwned2` ${HOME}",
    "SEMI": "a; touch pwned3 #",
    "EMPTY": "",
    "SECRET": Secret("s3cr3t'$(touch pwned4)"),
    "UNICODE": "déjà vu ✓",
}


def test_dotenv_lines() -> None:
    text = render_dotenv({"A": "1", "B": Secret("tok en"), "C": ""})
    assert text == "A=1\nB=tok en\nC=\n"


@pytest.mark.parametrize("breaker", ["\n", "\r", "\r\n"])
def test_dotenv_refuses_multi_line_values(breaker: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render_dotenv({"A": "ok", "B": Secret(f"line1{breaker}SECRET_LINE2")})
    assert caught.value.exit_code == 2
    assert "B" in caught.value.message
    assert "SECRET_LINE2" not in caught.value.diagnostics()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shell_output_round_trips_through_bash_eval(tmp_path: Path) -> None:
    values = {**HOSTILE, "MULTI": Secret("-----BEGIN-----\nline 2\n-----END-----")}
    script = render_shell(values)
    assert all(line.startswith("export ") for line in script.splitlines() if "=" in line[:20])

    names = " ".join(values)
    result = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$CI_SHARK_SCRIPT"; for n in ' + names + '; do printf "%s\\0" "${!n}"; done',
        ],
        env={"CI_SHARK_SCRIPT": script, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=tmp_path,
        capture_output=True,
        check=True,
    )

    got = result.stdout.decode().split("\0")[:-1]
    assert got == [reveal(value) for value in values.values()]
    assert list(tmp_path.iterdir()) == []  # nothing in the values ran


def test_json_output() -> None:
    text = render_json(HOSTILE)
    assert text.endswith("\n")
    assert json.loads(text) == {name: reveal(value) for name, value in HOSTILE.items()}


def test_renderers_never_print_asterisks_for_secrets() -> None:
    values = {"TOKEN": Secret("the-real-token")}
    for render in (render_dotenv, render_shell, render_json):
        assert "the-real-token" in render(values)
        assert "***" not in render(values)


# -- files ---------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".ci-shark-"))


def test_write_all_writes_every_file_0600(tmp_path: Path) -> None:
    env_file = tmp_path / "out" / "ci-shark.env"
    key_file = tmp_path / "keys" / "dpop.pem"
    env_file.parent.mkdir()
    key_file.parent.mkdir()
    write_all(
        [
            PlannedFile(env_file, "SHARK_STATUS=approved\n"),
            PlannedFile(key_file, Secret("-----BEGIN PRIVATE KEY-----\nabc\n")),
        ]
    )
    assert env_file.read_text() == "SHARK_STATUS=approved\n"
    assert key_file.read_text() == "-----BEGIN PRIVATE KEY-----\nabc\n"
    assert mode(env_file) == mode(key_file) == 0o600
    assert leftovers(env_file.parent) == leftovers(key_file.parent) == []


def test_write_all_replaces_a_readable_file_with_a_0600_one(tmp_path: Path) -> None:
    target = tmp_path / "ci-shark.env"
    target.write_text("old\n")
    target.chmod(0o644)
    write_all([PlannedFile(target, "new\n")])
    assert target.read_text() == "new\n"
    assert mode(target) == 0o600


def test_write_all_is_all_or_none_when_a_later_directory_is_missing(
    tmp_path: Path,
) -> None:
    first = tmp_path / "ci-shark.env"
    first.write_text("previous run\n")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")

    with pytest.raises(ConfigError) as caught:
        write_all(
            [
                PlannedFile(first, Secret("SHARK_ACCESS_TOKEN=new-token\n")),
                PlannedFile(blocker / "keys" / "dpop.pem", Secret("PEM")),
            ]
        )

    assert caught.value.exit_code == 2
    assert "output-file" in caught.value.diagnostics()
    assert not (blocker / "keys").exists()  # folders are not created behind the user's back
    assert "new-token" not in caught.value.diagnostics()
    assert first.read_text() == "previous run\n"  # untouched
    assert leftovers(tmp_path) == []  # the staged copy was removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_write_all_is_all_or_none_when_a_later_directory_is_unwritable(
    tmp_path: Path,
) -> None:
    first = tmp_path / "a" / "ci-shark.env"
    first.parent.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError):
            write_all(
                [PlannedFile(first, "SHARK_STATUS=approved\n"), PlannedFile(locked / "k", "PEM")]
            )
    finally:
        locked.chmod(0o700)
    assert not first.exists()
    assert leftovers(first.parent) == []


def test_write_all_is_all_or_none_when_a_later_target_is_a_directory(tmp_path: Path) -> None:
    first = tmp_path / "ci-shark.env"
    second = tmp_path / "dpop.pem"
    second.mkdir()  # e.g. `output-file` pointing at a directory

    with pytest.raises(ConfigError):
        write_all([PlannedFile(first, "SHARK_STATUS=approved\n"), PlannedFile(second, "PEM")])

    assert not first.exists()
    assert second.is_dir()
    assert leftovers(tmp_path) == []


def test_new_key_file_path_is_reserved_0600_and_unpredictable(tmp_path: Path) -> None:
    one, two = new_key_file_path(tmp_path), new_key_file_path(tmp_path)
    assert one != two
    assert one.parent == tmp_path
    assert one.name.startswith("ci-shark-dpop-")
    assert one.suffix == ".pem"
    assert mode(one) == 0o600


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("missing/ci-shark.env", "does not exist"),
        ("a-file/ci-shark.env", "is a file, not a folder"),
        ("a-dir", "is a directory, not a file"),
    ],
)
def test_check_writable_fails_before_anything_is_written(
    tmp_path: Path, where: str, words: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    with pytest.raises(ConfigError) as caught:
        check_writable(tmp_path / where, what="`output-file`")
    assert words in caught.value.message
    assert "existing folder you can write to" in (caught.value.hint or "")
    assert not (tmp_path / "missing").exists()
    check_writable(tmp_path / "fine.env", what="`output-file`")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "a-file"]


def test_private_directory_is_made_0700_and_an_open_one_is_refused(tmp_path: Path) -> None:
    made = private_directory(tmp_path / "mine")
    assert mode(made) == 0o700
    assert private_directory(made) == made  # ours: used again
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(ConfigError, match="not a private folder"):
        private_directory(tmp_path / "open")
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(ConfigError, match="not a private folder"):
        private_directory(tmp_path / "link")


@pytest.mark.parametrize("render", [render_dotenv, render_json])
def test_credentials_files_read_back_as_written(tmp_path: Path, render: object) -> None:
    named = credentials().named()
    values = {name: reveal(value) for name, value in named.items()}
    path = tmp_path / "creds"
    path.write_text(render(named))  # type: ignore[operator]
    read = read_credentials(path)
    assert read["SHARK_ACCESS_TOKEN"] == values["SHARK_ACCESS_TOKEN"]
    assert read["SHARK_DPOP_JWK"] == values["SHARK_DPOP_JWK"]
    assert read["SHARK_TOKEN_TYPE"] == "DPoP"


def test_server_scope_cannot_inject_into_a_dotenv_or_shell() -> None:
    tokens = parse_token_response(
        {"access_token": "t", "token_type": "DPoP", "scope": "openid $(id);`x` a|b"}
    )
    assert tokens.scope == "openid __id___x_ a_b"


def test_a_lock_held_elsewhere_is_waited_for_then_given_up_with_a_clear_error(
    tmp_path: Path,
) -> None:
    creds, lock = tmp_path / "ci-shark.json", tmp_path / "ci-shark.json.lock"
    clock = FakeClock(0.0)
    with locked_beside(creds, wait_s=0, clock=clock, sleep=clock.advance):
        pass  # free: taken at once
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    with open(lock) as other:  # another process's hold (flock: per open file)
        fcntl.flock(other, fcntl.LOCK_EX)
        with (
            pytest.raises(CiSharkError) as raised,
            locked_beside(creds, wait_s=5, clock=clock, sleep=clock.advance),
        ):
            pytest.fail("the lock was taken while another holder had it")
    assert clock() >= 5  # waited for as long as it was told, no longer
    assert f"rewriting {creds}" in raised.value.message


def test_rewrite_keeps_the_files_format(tmp_path: Path) -> None:
    values = {"SHARK_ACCESS_TOKEN": Secret("at-2"), "SHARK_TOKEN_TYPE": "DPoP"}
    dotenv_file, new_file = tmp_path / "c.env", tmp_path / "new"
    dotenv_file.write_text("SHARK_ACCESS_TOKEN=at-1\n")
    rewrite_credentials(dotenv_file, values)
    rewrite_credentials(new_file, values)
    assert dotenv_file.read_text() == "SHARK_ACCESS_TOKEN=at-2\nSHARK_TOKEN_TYPE=DPoP\n"
    assert json.loads(new_file.read_text())["SHARK_ACCESS_TOKEN"] == "at-2"
