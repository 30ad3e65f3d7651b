#!/usr/bin/env bash
# Self-test helper: start (or --stop) the loopback sandbox authorization server in the
# background, on 127.0.0.1:$SANDBOX_PORT, with the action's own venv. Extra arguments go
# to `python -m ci_shark.sandbox` (e.g. --approve-after 2 --deny).
#
# --workload-identity (first): the sandbox takes the job's OIDC token as client
# authentication for ci-shark-selftest, from this repository only: GitHub's token service,
# or the loopback stand-in an engine test names in CI_SHARK_SELFTEST_CI_ISSUER (nektos act
# has no token service; the test sets ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN to its fake).
set -euo pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
state="${RUNNER_TEMP:?}/ci-shark-sandbox"
mkdir -p "${state}"

# Alive and not a zombie: the orphaned sandbox's new parent may never reap it.
running() {
  local stat
  stat="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ -n "${stat}" && "${stat}" != Z* ]]
}

if [[ "${1:-}" == "--stop" ]]; then
  # Stopped means the port is closed: wait (up to 10 s) for the sandbox to finish its own
  # shutdown after SIGTERM, then SIGKILL it. A later step may bind the same port.
  if [[ -f "${state}/pid" ]]; then
    pid="$(cat "${state}/pid")"
    kill "${pid}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      running "${pid}" || break
      sleep 0.2
    done
    if running "${pid}"; then
      echo "::warning::the sandbox did not stop within 10 s of SIGTERM; killing it"
      kill -9 "${pid}" 2>/dev/null || true
    fi
    rm -f "${state}/pid"
  fi
  exit 0
fi

trust=()
if [[ "${1:-}" == "--workload-identity" ]]; then
  shift
  issuer="${CI_SHARK_SELFTEST_CI_ISSUER:-https://token.actions.githubusercontent.com}"
  trust=(--trust-ci-issuer "${issuer}/.well-known/jwks" --ci-issuer "${issuer}"
    --ci-allow "ci-shark-selftest:repository=${GITHUB_REPOSITORY:?}")
fi

: > "${state}/setup-output"
GITHUB_OUTPUT="${state}/setup-output" bash "${root}/scripts/action-setup.sh"
python="$(sed -n 's/^python=//p' "${state}/setup-output")"

# nohup: an engine that runs each step in its own terminal session (nektos act does)
# hangs up that session when the step ends; the sandbox must outlive its step.
PYTHONPATH="${root}" nohup "${python}" -m ci_shark.sandbox --port "${SANDBOX_PORT:?}" ${trust[@]+"${trust[@]}"} "$@" \
  > "${state}/log" 2>&1 &
echo $! > "${state}/pid"
for _ in $(seq 1 100); do
  if grep -q "listening on" "${state}/log"; then
    cat "${state}/log"
    exit 0
  fi
  sleep 0.2
done
cat "${state}/log"
echo "::error::the sandbox did not start"
exit 1
