#!/usr/bin/env bash
# The composite actions' setup step: a private venv under $RUNNER_TEMP with the
# hash-pinned wheels of requirements/action.txt, reused by later ci_shark steps of the job.
# Prints `python=<venv python>` to $GITHUB_OUTPUT. No cache, no setup-python: the runner's
# own CPython 3.10-3.14 builds the venv, and a clear error says what to do without one.
set -euo pipefail

action_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
lock="${action_root}/requirements/action.txt"

# The lock has wheels for CPython 3.10-3.14: prefer an interpreter in that range.
supported='import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)'
found=""
python=""
for candidate in python3 python python3.14 python3.13 python3.12 python3.11 python3.10; do
  if ! command -v "${candidate}" >/dev/null 2>&1; then
    continue
  fi
  # The Windows Store alias named python3 exists but does not run: ask, do not assume.
  version="$("${candidate}" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  [[ -n "${version}" ]] || continue
  found="${found:+${found}, }${candidate} ${version}"
  if "${candidate}" -c "${supported}"; then
    python="${candidate}"
    break
  fi
done
if [[ -z "${python}" ]]; then
  echo "::error title=ci_shark::ci_shark needs CPython 3.10 to 3.14 on the runner (found: ${found:-none}). Add actions/setup-python with python-version: '3.13' before this step."
  exit 2
fi

digest="$("${python}" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:16])' "${lock}")"
temp_root="${RUNNER_TEMP:-}"
if [[ -z "${temp_root}" ]]; then
  temp_root="$(mktemp -d)"
fi
venv="${temp_root}/ci-shark-venv-${digest}"
if [[ -x "${venv}/bin/python" ]]; then
  venv_python="${venv}/bin/python"
else
  venv_python="${venv}/Scripts/python.exe"
fi

if [[ ! -f "${venv}/.ci-shark-ready" ]]; then
  rm -rf "${venv}"
  # --without-pip: ensurepip is ~7 of the ~19 s this step takes; the runner's own pip
  # installs into the venv instead (pip >= 22.3: --python), ensurepip only as a fallback.
  if ! "${python}" -m venv --without-pip "${venv}"; then
    echo "::error title=ci_shark::could not create a virtual environment with ${python}: install the venv module (Debian/Ubuntu: python3-venv) or add actions/setup-python before this step."
    exit 2
  fi
  if [[ -x "${venv}/bin/python" ]]; then
    venv_python="${venv}/bin/python"
  else
    venv_python="${venv}/Scripts/python.exe"
  fi
  install=(install --disable-pip-version-check --no-input --quiet
    --require-hashes --only-binary :all: --no-deps -r "${lock}")
  if ! "${python}" -m pip --python "${venv_python}" "${install[@]}" 2>/dev/null; then
    "${venv_python}" -m ensurepip --default-pip >/dev/null
    "${venv_python}" -m pip "${install[@]}"
  fi
  # Bytecode now, not on the first login of the job (~60 ms of the time to the link).
  "${venv_python}" -m compileall -q "${action_root}/ci_shark" >/dev/null || true
  touch "${venv}/.ci-shark-ready"
fi

echo "python=${venv_python}" >> "${GITHUB_OUTPUT}"
