"""The approval request as log lines: what a person watching the job reads.

- Plain text, one line each; every value we did not write goes through
  :func:`ci_shark.safe_text.untrusted` (no control character, no line break, ``##``
  split so that no runner acts on it). The log writer prints a prefix or indent before
  each line, so none of them starts a workflow command.
- The link, the code and the expiry first (what a person needs to act), then the other
  entry point, the foreign-host warning, the requested facts, the caution.
- The run's facts are left out: the log is the run's own page.
"""

from __future__ import annotations

from ci_shark.render import facts
from ci_shark.render.domain import ApprovalRequest
from ci_shark.safe_text import untrusted

LABEL_WIDTH = 10  # "resource: ", the longest label, so the values line up


def approval_log_lines(request: ApprovalRequest) -> list[str]:
    code = untrusted(request.user_code, facts.CODE_LIMIT)
    lines = [
        "ci_shark: approval needed",
        _line("open", untrusted(request.link, 500)),
        _line("code", code),
        _line("expires", facts.utc(request.expires_at)),
    ]
    if request.verification_uri != request.link:
        lines.append(f"  or enter the code at {untrusted(request.verification_uri, 500)}")
    if request.foreign_link:
        hosts = untrusted(request.link_host), untrusted(request.server_host)
        lines.append(_line("warning", facts.foreign_host(*hosts)))
    lines += [_line(fact.label, _values(fact)) for fact in facts.requested(request)]
    lines.append(f"  {facts.CAUTION} {code}.")
    return lines


def _line(label: str, text: str) -> str:
    return f"  {label + ':':<{LABEL_WIDTH}}{text}"


def _values(fact: facts.Fact) -> str:
    return ", ".join(untrusted(value, fact.limit) for value in fact.shown) or fact.otherwise
