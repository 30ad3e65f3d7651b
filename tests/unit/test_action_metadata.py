"""action.yml and revoke/action.yml keep the composite-action rules of issue 3.

Read as text on purpose (no YAML dependency): the rules are about what the lines say.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ci_shark.config import NOTIFY_CHANNELS, PROVIDER_NAMES, Settings
from ci_shark.platforms.github_outputs import STEP_OUTPUTS

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = [ROOT / "action.yml", ROOT / "revoke" / "action.yml"]


def _run_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip().startswith("run:")]


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_expression_in_run_and_bash_everywhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "using: composite" in text
    runs = _run_lines(text)
    assert runs
    assert all("${{" not in line for line in runs)
    assert text.count("shell: bash") == len(runs)
    # exec: the runner's signals reach python; -I: no PYTHON* variable or user site from
    # an earlier step changes what runs with the secrets.
    assert re.search(r"run: exec \"\$\{ACTION_VENV_PYTHON\}\" -I ", text)


# Settings that mean nothing on GitHub, so the action has no input for them, each with why.
NOT_ACTION_INPUTS = {
    "gitlab_token": "it posts GitLab MR notes; GitLab jobs set CI_SHARK_GITLAB_TOKEN",
}


def test_every_setting_is_an_input_passed_through_env() -> None:
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    for field in Settings.model_fields:
        name = field.replace("_", "-")
        inputs = re.search(rf"^  {name}:\n    description: ", text, re.MULTILINE)
        passed = f"CI_SHARK_{field.upper()}: ${{{{ inputs.{name} }}}}" in text
        if field in NOT_ACTION_INPUTS:
            assert not inputs, f"{name}: {NOT_ACTION_INPUTS[field]}"
            assert f"CI_SHARK_{field.upper()}:" not in text, name
        else:
            assert inputs, name
            assert passed, name


def test_every_exempt_setting_exists() -> None:
    assert set(NOT_ACTION_INPUTS) <= set(Settings.model_fields)


def test_every_step_output_is_wired() -> None:
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    for name in [*STEP_OUTPUTS, "dpop-private-key", "status", "credentials-file"]:
        assert f"value: ${{{{ steps.login.outputs.{name} }}}}" in text, name


def test_the_lock_is_hash_pinned_for_every_package() -> None:
    lines = (ROOT / "requirements" / "action.txt").read_text(encoding="utf-8").splitlines()
    pins = [line for line in lines if line and not line.startswith((" ", "#"))]
    assert pins
    for pin in pins:
        assert re.match(r"^[a-z0-9-]+==[\w.]+( ; .+)? \\$", pin), pin
    assert all("--hash=sha256:" in line for line in lines if line.startswith(" "))


def test_the_matrix_leg_reaches_the_login_step() -> None:
    # Each leg's own PR comment depends on it (platforms/github.py reads CI_SHARK_MATRIX).
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    assert "        CI_SHARK_MATRIX: ${{ toJSON(matrix) }}\n" in text


def test_the_action_lists_the_providers_and_channels_the_code_knows() -> None:
    # One list in the code (oauth/providers.py, config.py); the action's words follow it.
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    provider = re.search(r"^  provider:\n    description: (.+)$", text, re.MULTILINE)
    assert provider is not None
    named = set(re.findall(r"\b([a-z0-9]+)\b", provider[1]))
    assert set(PROVIDER_NAMES) <= named
    notify = re.search(r"^  notify:\n    description: (.+)$", text, re.MULTILINE)
    assert notify is not None
    assert set(NOTIFY_CHANNELS) <= set(re.findall(r"\b([a-z]+)\b", notify[1]))


def test_the_direct_wheels_are_the_locked_ones_for_every_platform() -> None:
    # install_wheels.py trusts these lines; pip's fallback trusts action.txt: the same hashes.
    locked = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", _read("action.txt")))
    keys: dict[str, int] = {}
    for line in _read("action-wheels.txt").splitlines():
        if line.startswith("#"):
            continue
        key, digest, url = line.split(" ")
        assert digest in locked, line
        assert url.startswith("https://"), url
        assert url.endswith(".whl"), url
        keys[key] = keys.get(key, 0) + 1
    pythons = [f"cp3{minor}" for minor in range(10, 15)]
    platforms = ["linux-x86_64", "linux-aarch64", "macos-arm64", "windows-amd64"]
    assert sorted(keys) == sorted(f"{p}-{o}" for p in pythons for o in platforms)
    assert min(keys.values()) >= 16  # every runtime dependency, transitive ones too


def _read(name: str) -> str:
    return (ROOT / "requirements" / name).read_text(encoding="utf-8")
