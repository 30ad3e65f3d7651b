"""The webhook's formats, by the name `webhook-format` takes: ``slack``, ``teams``, ``json``.

Webhooks cannot edit what they posted, so each run posts two messages: the request (link,
code, expiry, who is asking), then the outcome (no code, no link). Each format is a module
of its own (:mod:`.slack`, :mod:`.teams`, :mod:`.json_message`) that writes the facts of
:mod:`.facts` with its own escaping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ci_shark.render.domain import ApprovalRequest, Outcome
from ci_shark.render.json_message import json_approval, json_outcome
from ci_shark.render.slack import slack_approval, slack_outcome
from ci_shark.render.teams import teams_approval, teams_outcome

APPROVAL_MESSAGES: dict[str, Callable[[ApprovalRequest], dict[str, Any]]] = {
    "slack": slack_approval,
    "teams": teams_approval,
    "json": json_approval,
}
OUTCOME_MESSAGES: dict[str, Callable[[Outcome, ApprovalRequest | None], dict[str, Any]]] = {
    "slack": slack_outcome,
    "teams": teams_outcome,
    "json": json_outcome,
}
