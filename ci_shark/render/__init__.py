"""What people read: the approval request and the outcome, in every format.

- :mod:`.domain`: the values (the run, the request, the outcome), no words.
- :mod:`.facts`: what an approver reads of them, written once, with the shared words.
- One module per format, each writing the facts with its own escaping: :mod:`.gfm`
  (summary, PR comment, MR note, issue), :mod:`.log_lines`, :mod:`.slack`, :mod:`.teams`,
  :mod:`.json_message`; :mod:`.webhook` names the webhook's formats.

The names callers use are re-exported here.
"""

from ci_shark.render.domain import ApprovalRequest, Outcome, RunContext
from ci_shark.render.gfm import (
    GITHUB_NAME,
    approval_markdown,
    issue_title,
    marker,
    mentions,
    outcome_markdown,
)
from ci_shark.render.log_lines import approval_log_lines
from ci_shark.render.webhook import APPROVAL_MESSAGES, OUTCOME_MESSAGES

__all__ = [
    "APPROVAL_MESSAGES",
    "GITHUB_NAME",
    "OUTCOME_MESSAGES",
    "ApprovalRequest",
    "Outcome",
    "RunContext",
    "approval_log_lines",
    "approval_markdown",
    "issue_title",
    "marker",
    "mentions",
    "outcome_markdown",
]
