#!/usr/bin/env bash
# The composite actions' setup step: a private venv under $RUNNER_TEMP with the
# hash-pinned wheels of the lock, reused by later ci_shark steps of the job.
# Prints `python=<venv python>` to $GITHUB_OUTPUT and puts a `ci-shark` launcher on
# $GITHUB_PATH for the later steps of the job. No cache, no setup-python: the runner's
# own CPython 3.10-3.14 builds the venv, and a clear error says what to do without one.
#
# Fast path (docs/perf.md): scripts/install_wheels.py fetches this platform's wheels by
# their direct URLs (requirements/action-wheels.txt) and unpacks them, no index and no
# resolver. Where it cannot (no wheels listed for this interpreter, no network path it
# trusts), pip installs requirements/action.txt from the index: the same hashes.
set -euo pipefail

action_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
lock="${action_root}/requirements/action.txt"
wheels="${action_root}/requirements/action-wheels.txt"

# The lock has wheels for CPython 3.10-3.14: prefer an interpreter in that range. One
# python call per candidate (each is 20-100 ms): its version, then the digest of the
# locks that names the venv, and the exit status says whether it is in range.
probe='import hashlib, sys
digest = hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest()
sys.stdout.write("%d.%d %s\n" % (sys.version_info[0], sys.version_info[1], digest[:16]))
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)'
found=""
python=""
for candidate in python3 python python3.14 python3.13 python3.12 python3.11 python3.10; do
  if ! command -v "${candidate}" >/dev/null 2>&1; then
    continue
  fi
  # The Windows Store alias named python3 exists but does not run: ask, do not assume.
  status=0
  # -I everywhere: the step runs in the checkout, whose hashlib.py or venv.py must not run.
  answer="$("${candidate}" -I -c "${probe}" "${lock}" "${wheels}" 2>/dev/null)" || status=$?
  [[ -n "${answer}" ]] || continue
  found="${found:+${found}, }${candidate} ${answer%% *}"
  if [[ "${status}" -eq 0 ]]; then
    python="${candidate}"
    digest="${answer##* }"
    break
  fi
done
if [[ -z "${python}" ]]; then
  echo "::error title=ci_shark::ci_shark needs CPython 3.10 to 3.14 on the runner (found: ${found:-none}). Add actions/setup-python with python-version: '3.13' before this step."
  exit 2
fi

temp_root="${RUNNER_TEMP:-}"
if [[ -z "${temp_root}" ]]; then
  temp_root="$(mktemp -d)"
fi
venv="${temp_root}/ci-shark-venv-${digest}"

find_venv_python() {  # POSIX venvs have bin/python, Windows ones Scripts/python.exe
  if [[ -x "${venv}/bin/python" ]]; then
    venv_python="${venv}/bin/python"
  else
    venv_python="${venv}/Scripts/python.exe"
  fi
}
find_venv_python

create_venv() {
  rm -rf "${venv}"
  # --without-pip: ensurepip is ~7 of the ~19 s this step once took, and neither path
  # below needs pip inside the venv.
  if ! "${python}" -I -m venv --without-pip "${venv}"; then
    echo "::error title=ci_shark::could not create a virtual environment with ${python}: install the venv module (Debian/Ubuntu: python3-venv) or add actions/setup-python before this step."
    exit 2
  fi
  find_venv_python
}

install_from_index() (
  # The runner's own pip fills the venv (pip >= 22.3: --python); ensurepip as a fallback.
  # pip --python starts the venv's python again, without -I: in this subshell no PYTHON*
  # variable is left, so a workflow's PYTHONPATH (its sitecustomize.py) runs nowhere.
  for name in $(compgen -e); do
    if [[ "${name}" == PYTHON* ]]; then
      unset "${name}"
    fi
  done
  install=(install --disable-pip-version-check --no-input --quiet --no-compile
    --require-hashes --only-binary :all: --no-deps -r "${lock}")
  if ! "${python}" -I -m pip --python "${venv_python}" "${install[@]}" 2>/dev/null; then
    "${venv_python}" -I -m ensurepip --default-pip >/dev/null
    "${venv_python}" -I -m pip "${install[@]}"
  fi
)

if [[ ! -f "${venv}/.ci-shark-ready" ]]; then
  create_venv
  status=0
  "${venv_python}" -I "${action_root}/scripts/install_wheels.py" "${wheels}" || status=$?
  if [[ "${status}" -ne 0 ]]; then
    # 3: no direct wheels for this interpreter, said before anything was unpacked: the
    # empty venv serves pip. Else install_wheels.py said what failed, maybe half-way.
    echo "ci_shark: installing the pinned wheels with pip from the package index instead"
    [[ "${status}" -eq 3 ]] || create_venv
    install_from_index
  fi
  # No bytecode here: the login compiles what it imports and writes each .pyc (into this
  # venv and the action's checkout) for the later ci_shark steps of the job. Compiling
  # everything first made the link ~0.4 s later; compiling it in the background, beside
  # the login, was no faster on 2 busy cores (docs/perf.md).
  touch "${venv}/.ci-shark-ready"
fi

# `ci-shark` for every later step of the job: this venv's python on this checkout of the
# action (-I: no PYTHON* variable or user site from another step changes what runs).
launchers="${temp_root}/ci-shark-bin"
mkdir -p "${launchers}"
printf '#!/usr/bin/env bash\nexec %q -I %q "$@"\n' "${venv_python}" "${action_root}/entrypoint.py" \
  > "${launchers}/ci-shark"
chmod 0755 "${launchers}/ci-shark"
if command -v cygpath >/dev/null 2>&1; then  # Windows: for cmd and PowerShell steps too
  printf '@"%s" -I "%s" %%*\r\n' "$(cygpath -w "${venv_python}")" \
    "$(cygpath -w "${action_root}/entrypoint.py")" > "${launchers}/ci-shark.cmd"
fi
if [[ -n "${GITHUB_PATH:-}" ]]; then
  echo "${launchers}" >> "${GITHUB_PATH}"
fi

echo "python=${venv_python}" >> "${GITHUB_OUTPUT}"
