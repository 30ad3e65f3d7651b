#!/usr/bin/env bash
# Self-test helper: run the action's entrypoint as the runner would on a pull request
# from a fork, and check that it is refused (exit 6) before any device code is requested.
set -euo pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
state="${RUNNER_TEMP:?}/ci-shark-fork"
mkdir -p "${state}"
cat > "${state}/event.json" <<JSON
{"pull_request": {"number": 1,
  "head": {"sha": "${GITHUB_SHA:?}", "repo": {"full_name": "someone-else/fork"}},
  "base": {"repo": {"full_name": "${GITHUB_REPOSITORY:?}"}}}}
JSON
: > "${state}/output"
: > "${state}/summary"
: > "${state}/setup-output"
GITHUB_OUTPUT="${state}/setup-output" bash "${root}/scripts/action-setup.sh"
python="$(sed -n 's/^python=//p' "${state}/setup-output")"

status=0
GITHUB_EVENT_NAME=pull_request \
  GITHUB_EVENT_PATH="${state}/event.json" \
  GITHUB_OUTPUT="${state}/output" \
  GITHUB_STEP_SUMMARY="${state}/summary" \
  CI_SHARK_AUTH_URL="http://127.0.0.1:${SANDBOX_PORT:?}" \
  CI_SHARK_CLIENT_ID=ci-shark-selftest \
  CI_SHARK_NOTIFY=log,summary \
  "${python}" "${root}/entrypoint.py" || status=$?

if [[ "${status}" != 6 ]]; then
  echo "::error::expected exit 6 (refused by policy), got ${status}"
  exit 1
fi
grep -qx "status=refused" "${state}/output"
if grep -q "POST /oauth/device" "${RUNNER_TEMP}/ci-shark-sandbox/log" 2>/dev/null; then
  echo "::error::a device code was requested for a fork"
  exit 1
fi
echo "refused as expected"
