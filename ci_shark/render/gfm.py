"""GitHub-flavoured markdown: the job summary, the PR comment, the MR note, the issue.

GitHub renders with cmark-gfm, then links mentions, references and bare URLs in the text,
even after decoding character references (:mod:`ci_shark.safe_text` has the details). So:

- a value we did not write is a code span (:func:`md_code`), ``in_table`` in a table
  cell; a person's name may be plain words when nothing could act on them
  (:func:`md_text`);
- links come only from :func:`md_link` (a URL that passed the https rule);
- our words are written as they are (they hold no markup, see :mod:`.facts`);
- the only mentions ever written are the `notify-users` (:func:`mentions`), and only in
  the issue's body.

Layout: the run's facts as a line (a paragraph per group, under its title when there
are several), the link and the code, the requested facts as a table, the caution.
"""

from __future__ import annotations

import re

from ci_shark.render import facts
from ci_shark.render.domain import ApprovalRequest, Outcome, RunContext
from ci_shark.safe_text import md_code, md_link, md_text

MARKER_PREFIX = "ci-shark:"
# A GitHub login, or an org/team, as `notify-users` takes them (config.py checks them too).
GITHUB_NAME = re.compile(r"@?[A-Za-z0-9][A-Za-z0-9-]{0,38}(?:/[A-Za-z0-9_.-]+)?")


def approval_markdown(request: ApprovalRequest) -> str:
    """The job summary / PR comment / MR note body while the approval is pending."""
    host = md_code(request.link_host or "the authorization server")
    code = md_code(request.user_code, facts.CODE_LIMIT)
    lines = [
        f"### {facts.APPROVAL_TITLE}",
        "",
        *_asking(facts.asking(request)),
        f"**{md_link(f'Approve at {host}', request.link)}** with code {code} — expires "
        f"{facts.utc(request.expires_at)}",
        "",
    ]
    if request.foreign_link:
        warning = facts.sentence(facts.foreign_host(host, md_code(request.server_host)))
        lines += ["> [!WARNING]", f"> {warning}. {facts.TRUST_HOST}", ""]
    lines += _table(facts.requested(request))
    lines += ["", "> [!IMPORTANT]", f"> {facts.CAUTION} {code}."]
    return "\n".join(lines) + "\n"


def outcome_markdown(outcome: Outcome, request: ApprovalRequest | None) -> str:
    """The same message once the flow ended; the code and the link are gone."""
    lines = [f"### {facts.outcome_title(outcome.status)}", ""]
    if request is not None:
        lines += _asking(facts.asking(request))
    lines.append(f"{md_text(outcome.message, 300)} — {facts.utc(outcome.at)}")
    if outcome.approver:
        lines.append(f"\nApproved by {md_text(outcome.approver)}.")
    return "\n".join(lines) + "\n"


def _asking(groups: tuple[facts.FactGroup, ...]) -> list[str]:
    """Who asks: a paragraph per group, each fact `label value`, with ` · ` between."""
    paragraphs = []
    for group in groups:
        line = " · ".join(_fact(fact) for fact in group.facts)
        paragraphs += [f"**{facts.sentence(group.title)}:** {line}" if group.title else line, ""]
    return paragraphs or [facts.NO_CONTEXT, ""]


def _table(requested: tuple[facts.Fact, ...]) -> list[str]:
    rows = [f"| {fact.long_label} | {_values(fact, in_table=True)} |" for fact in requested]
    return ["| requested | |", "|---|---|", *rows]


def _fact(fact: facts.Fact) -> str:
    if fact.shown:
        values = _values(fact)
        linked = md_link(values, fact.url) if fact.url else values
        text = linked if fact.bare else f"{fact.label} {linked}"
    else:  # the label says it, and carries the link: "[run](…)"
        words = f"{fact.label}: {fact.otherwise}" if fact.otherwise else fact.label
        text = md_link(words, fact.url) if fact.url else words
    if fact.aside is not None and fact.aside.has_text:
        text += f" ({_fact(fact.aside)})"
    return text


def _values(fact: facts.Fact, *, in_table: bool = False) -> str:
    if not fact.shown:
        return fact.otherwise
    shown = ", ".join(
        md_text(value, fact.limit)
        if fact.person and not in_table
        else md_code(value, fact.limit, in_table=in_table)
        for value in fact.shown
    )
    return f"**{shown}**" if fact.lead else shown


def marker(context: RunContext, run_id: str | None = None) -> str:
    """The hidden first line of our note: the job's key (the same for every run of the job,
    so a PR comment is edited, not repeated), and for a note that belongs to one run (an
    issue) that run's id, which a re-run keeps."""
    key = context.marker_key()
    if run_id:
        key += "/run-" + re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:40]
    return f"<!-- {MARKER_PREFIX}{key} -->"


def mentions(users: tuple[str, ...]) -> str:
    """The only mentions ci_shark ever writes: the people the workflow's author listed in
    `notify-users`, as a paragraph for an issue body; "" when none."""
    names = [f"@{user.lstrip('@')}" for user in users if GITHUB_NAME.fullmatch(user)]
    return f"\ncc {' '.join(names)}\n" if names else ""


def issue_title(context: RunContext, run_id: str | None, status: str | None = None) -> str:
    """The issue's title: what it is about (workflow, job, run), and how it ended."""
    state = "approval needed" if status is None else facts.outcome_words(status)
    parts = [f"workflow {md_code(context.workflow or 'unnamed', 80)}"]
    if context.job:
        parts.append(f"job {md_code(context.job, 80)}")
    if run_id and run_id.isascii() and run_id.isdigit():
        parts.append(f"run {run_id}")
    return f"🔐 ci_shark: {state} — {', '.join(parts)}"
