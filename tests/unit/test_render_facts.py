"""The facts are written once and every format shows all of them: what the comment says,
the log, Slack, Teams and the json message say too. Each format is read as its receiver
would show it (cmark-gfm for markdown, the mrkdwn reader for Slack, the card's runs and
buttons for Teams), never by looking for strings in the source.

A fact added to ``ci_shark.render.facts`` is checked here in every format without a new
line in this file: the tests walk the facts the builder returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from support import gfm, slack_mrkdwn
from support.seen import LOOK_ALIKES_OF_MAIN, MAIN, as_seen
from test_render import HOSTILE_TEXTS, PULL, RUN, request
from test_render_webhook import card, walk

from ci_shark.render import ApprovalRequest, RunContext, approval_log_lines, approval_markdown
from ci_shark.render.facts import (
    Fact,
    FactGroup,
    asking,
    ci_token_facts,
    job_facts,
    requested,
)
from ci_shark.render.json_message import json_approval
from ci_shark.render.slack import slack_approval
from ci_shark.render.teams import teams_approval
from ci_shark.safe_text import one_line

JOB = "https://gitlab.example/g/p/-/jobs/9"
CONTEXTS = {
    "every fact": RunContext(
        platform="gitlab",
        repository="group/project",
        workflow="pipeline",
        job="ship-it",
        job_url=JOB,
        job_variant="env: prod",
        run_url=RUN,
        run_attempt="9999",
        commit="0123456789abcdef0123",
        actor="Jane Doe",
        change_request="MR !4",
        change_request_url=PULL,
    ),
    "links missing": RunContext(job="ship-it", run_attempt="8888", change_request="PR #1"),
    "a run link only": RunContext(repository="octo/app", run_url=RUN),
}
PROVED = "proved to the server by the CI's OIDC token"


@dataclass
class Shown:
    """What a receiver shows of one message: its visible text and its live links."""

    text: str
    links: list[str] = field(default_factory=list)


def shown_markdown(approval: ApprovalRequest) -> Shown:
    found = gfm.assert_inert(approval_markdown(approval), links={RUN, PULL, JOB, approval.link})
    return Shown(found.text, found.links)


def shown_slack(approval: ApprovalRequest) -> Shown:
    text = slack_approval(approval)["text"]
    found = slack_mrkdwn.assert_inert(text, links={RUN, PULL, JOB, approval.link})
    return Shown(found.text, found.links)


def shown_teams(approval: ApprovalRequest) -> Shown:
    objects = list(walk(card(teams_approval(approval))))
    blocks = ("".join(run["text"] for run in obj["inlines"]) for obj in objects if "inlines" in obj)
    titles = (obj["text"] for obj in objects if obj.get("type") == "TextBlock")
    links = [obj["url"] for obj in objects if obj.get("type") == "Action.OpenUrl"]
    return Shown("\n".join([*titles, *blocks]), links)


def shown_log(approval: ApprovalRequest) -> Shown:
    return Shown("\n".join(approval_log_lines(approval)))


Reader = Callable[[ApprovalRequest], Shown]
FOR_PEOPLE: dict[str, Reader] = {
    "markdown": shown_markdown,
    "slack": shown_slack,
    "teams": shown_teams,
}


def every_fact(facts: tuple[Fact, ...]) -> Iterator[Fact]:
    for fact in facts:
        yield fact
        if fact.aside is not None and fact.aside.known:
            yield fact.aside


@pytest.mark.parametrize("reader", FOR_PEOPLE.values(), ids=FOR_PEOPLE.keys())
@pytest.mark.parametrize("context", CONTEXTS.values(), ids=CONTEXTS.keys())
def test_every_format_shows_every_fact_of_the_run(context: RunContext, reader: Reader) -> None:
    shown = reader(request(context=context))
    without = reader(request(context=RunContext()))
    facts = list(every_fact(job_facts(context)))
    assert facts
    for fact in facts:
        for value in fact.shown:
            assert value in shown.text, f"{fact.name} missing"
            assert value not in without.text, f"{fact.name}: the test needs a value of its own"
        if fact.url:
            assert fact.url in shown.links, f"the link of {fact.name} missing"


@pytest.mark.parametrize("context", CONTEXTS.values(), ids=CONTEXTS.keys())
def test_the_json_message_has_every_fact_of_the_run_whole(context: RunContext) -> None:
    fields = json_approval(request(context=context))["context"]
    for fact in every_fact(job_facts(context)):
        if fact.value:
            assert fields[fact.name] == fact.value  # the commit too: data is not cut short
        if fact.url:
            assert fields[f"{fact.name}_url"] == fact.url
    assert fields["commit"] in (context.commit, None)


REQUESTS = {
    "everything": request(resource=("https://a.example/", "https://b.example/x")),
    "server default": request(scope=None, resource=(), dpop_jkt=None),
}


@pytest.mark.parametrize("reader", [*FOR_PEOPLE.values(), shown_log], ids=[*FOR_PEOPLE, "log"])
@pytest.mark.parametrize("approval", REQUESTS.values(), ids=REQUESTS.keys())
def test_every_format_shows_every_requested_fact(approval: ApprovalRequest, reader: Reader) -> None:
    shown = reader(approval)
    for fact in requested(approval):
        assert fact.shown or fact.otherwise
        for words in fact.shown or (fact.otherwise,):
            assert words in shown.text, f"{fact.name} missing"
    assert approval.user_code in shown.text
    assert "2026-11-22 12:00:00 UTC" in shown.text


def test_the_log_says_the_scope_is_the_servers_default_as_the_comment_does() -> None:
    lines = approval_log_lines(request(scope=None))
    assert "  scope:    server default" in lines
    assert "server default" in gfm.read(approval_markdown(request(scope=None))).text


def test_the_json_message_has_every_requested_fact() -> None:
    approval = REQUESTS["everything"]
    fields = json_approval(approval)["request"]
    assert fields["resource"] == ["https://a.example/", "https://b.example/x"]
    assert fields["scope"] == "deploy"
    assert fields["dpop_jkt"] == approval.dpop_jkt


# -- groups: what the job says, and what someone else vouches for --------------------------


def proved(text: str = "octo/app") -> FactGroup:
    return FactGroup(
        "proved",
        PROVED,
        (
            Fact("repository", "repository", text),
            Fact("ref", "ref", "refs/heads/main"),
            Fact("run_id", "run id", "4242"),
        ),
    )


def test_a_lone_group_has_no_title_and_a_vouched_group_always_has_one() -> None:
    (alone,) = asking(request())
    assert alone.title == ""
    job, vouched = asking(request(vouched=(proved(),)))
    assert job.title == "what the job says about itself"
    assert vouched.title == PROVED
    (only,) = asking(request(context=RunContext(), vouched=(proved(),)))
    assert only.title == PROVED


def test_the_comment_shows_each_group_as_its_own_titled_paragraph() -> None:
    markdown = approval_markdown(request(vouched=(proved(),)))
    paragraphs = [" ".join(p.split()) for p in gfm.read(markdown).text.split("\n") if p.strip()]
    said = next(p for p in paragraphs if p.startswith("What the job says about itself:"))
    vouched = next(p for p in paragraphs if p.startswith("Proved to the server by the CI's"))
    assert "octo/app" in said
    assert "triggered by octocat" in said
    assert "refs/heads/main" not in said
    assert vouched.endswith("repository octo/app · ref refs/heads/main · run id 4242")


def test_slack_shows_each_group_on_its_own_titled_line() -> None:
    text = slack_mrkdwn.read(slack_approval(request(vouched=(proved(),)))["text"]).text
    lines = text.split("\n")
    assert lines[1].startswith("*What the job says about itself:* *`octo/app`* · workflow")
    assert lines[2] == (
        "*Proved to the server by the CI's OIDC token:* "
        "repository `octo/app` · ref `refs/heads/main` · run id `4242`"
    )


def test_teams_shows_each_group_under_its_title() -> None:
    objects = list(walk(card(teams_approval(request(vouched=(proved(),))))))
    texts = [
        obj["text"] if obj["type"] == "TextBlock" else "".join(i["text"] for i in obj["inlines"])
        for obj in objects
        if obj.get("type") in ("TextBlock", "RichTextBlock")
    ]
    said = texts.index("What the job says about itself")
    vouched = texts.index("Proved to the server by the CI's OIDC token")
    assert said < texts.index("workflow: deploy") < vouched
    assert texts[vouched + 1 : vouched + 4] == [
        "repository: octo/app",
        "ref: refs/heads/main",
        "run id: 4242",
    ]


def test_the_json_message_has_each_vouched_group_under_its_name() -> None:
    payload = json_approval(request(vouched=(proved(),)))
    assert payload["proved"] == {
        "repository": "octo/app",
        "ref": "refs/heads/main",
        "run_id": "4242",
    }
    assert payload["context"]["repository"] == "octo/app"
    assert "ref" not in payload["context"]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_a_vouched_group_is_as_inert_as_the_rest(text: str) -> None:
    approval = request(vouched=(proved(text),))
    gfm.assert_inert(approval_markdown(approval), links={RUN, PULL, approval.link})
    slack_mrkdwn.assert_inert(slack_approval(approval)["text"], links={RUN, PULL, approval.link})
    teams = walk(card(teams_approval(approval)))
    assert one_line(text) in [obj["text"] for obj in teams if obj.get("type") == "TextRun"]
    assert json_approval(approval)["proved"]["repository"] == one_line(text, 300)


# -- our words -----------------------------------------------------------------------------

_PLAIN_WORDS = re.compile(r"[A-Za-z0-9 ,.'/()-]+")


def our_words(facts: tuple[Fact, ...]) -> Iterator[str]:
    for fact in every_fact(facts):
        yield from (words for words in (fact.label, fact.hint, fact.otherwise) if words)


def test_our_words_hold_nothing_a_format_acts_on() -> None:
    """Labels, hints and titles are written as they are in every format: plain words."""
    vouched = (proved(), ci_token_facts(GITHUB_CLAIMS))
    approval = request(context=CONTEXTS["every fact"], scope=None, vouched=vouched)
    words = [group.title for group in asking(approval)]
    words += our_words(requested(approval))
    words += [w for group in asking(approval) for w in our_words(group.facts)]
    for text in words:
        assert _PLAIN_WORDS.fullmatch(text), text


# -- the claims of the CI's OIDC token ---------------------------------------------------

GITHUB_CLAIMS = {
    "iss": "https://token.actions.githubusercontent.com",
    "aud": "https://auth.example",
    "sub": "repo:octo/app:ref:refs/heads/main",
    "repository": "octo/app",
    "ref": "refs/heads/main",
    "sha": "8f2d1c7e5b4a39608172635445362718a9b0c1d2",
    "workflow": "Deploy",
    "workflow_ref": "octo/app/.github/workflows/deploy.yml@refs/heads/main",
    "run_id": "9876543210",
    "run_attempt": "2",
    "actor": "octocat",
    "jti": "5c7e0c4a",
    "exp": 1_700_000_300,
}
GITLAB_CLAIMS = {
    "iss": "https://gitlab.example.com",
    "sub": "project_path:group/project:ref_type:branch:ref:main",
    "project_path": "group/project",
    "ref": "main",
    "sha": "0123456789abcdef0123456789abcdef01234567",
    "ci_config_ref_uri": "gitlab.example.com/group/project//.gitlab-ci.yml@refs/heads/main",
    "pipeline_id": "4242",
    "user_login": "maria",
}
BUILDKITE_CLAIMS = {
    "iss": "https://agent.buildkite.com",
    "sub": "organization:acme:pipeline:deploy:ref:refs/heads/main:commit:abc:step:ship",
    "organization_slug": "acme",
    "pipeline_slug": "deploy",
    "build_number": 17,
    "build_branch": "main",
    "build_commit": "abcdef0123456789",
}
AZURE_CLAIMS = {
    "iss": "https://vstoken.dev.azure.com/0f0e",
    "sub": "p://example/test-oidc/test-oidc",
    "rpo_uri": "https://dev.azure.com/example/test-oidc/_git/test-oidc",
    "rpo_ref": "refs/heads/main",
    "rpo_ver": "0123456789abcdef0123",
    "run_id": "311",
}


def shown_facts(group: FactGroup) -> dict[str, tuple[str, ...]]:
    return {fact.name: fact.shown for fact in every_fact(group.facts)}


def test_the_ci_tokens_claims_are_a_group_proved_to_the_server() -> None:
    group = ci_token_facts(GITHUB_CLAIMS)
    assert (group.name, group.title) == ("ci_token", PROVED)
    assert shown_facts(group) == {
        "repository": ("octo/app",),
        "ref": ("refs/heads/main",),
        "commit": ("8f2d1c7e5b4a",),  # people read 12; the json message keeps all 40
        "workflow": ("octo/app/.github/workflows/deploy.yml@refs/heads/main",),
        "run_id": ("9876543210",),
        "run_attempt": ("2",),
        "actor": ("octocat",),
        "subject": ("repo:octo/app:ref:refs/heads/main",),
        "issuer": ("https://token.actions.githubusercontent.com",),
    }
    payload = json_approval(request(vouched=(group,)))["ci_token"]
    assert payload["commit"] == GITHUB_CLAIMS["sha"]
    assert set(payload).isdisjoint({"jti", "aud", "exp"})  # not facts for a person


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param(
            GITLAB_CLAIMS,
            {"repository": "group/project", "ref": "main", "run_id": "4242", "actor": "maria"},
            id="gitlab",
        ),
        pytest.param(
            BUILDKITE_CLAIMS,
            {"repository": "acme/deploy", "ref": "main", "run_id": "17", "workflow": "deploy"},
            id="buildkite",
        ),
        pytest.param(
            AZURE_CLAIMS,
            {"repository": AZURE_CLAIMS["rpo_uri"], "ref": "refs/heads/main", "run_id": "311"},
            id="azure",
        ),
    ],
)
def test_each_cis_claims_say_the_same_facts(
    claims: dict[str, object], expected: dict[str, str]
) -> None:
    shown = shown_facts(ci_token_facts(claims))
    assert {name: shown[name][0] for name in expected} == expected
    assert shown["subject"] == (claims["sub"],)


def test_claims_that_are_no_text_are_left_out() -> None:
    claims = {"repository": ["octo/app"], "ref": {"x": 1}, "run_id": True, "sub": "", "sha": None}
    assert ci_token_facts(claims).facts == ()
    (alone,) = asking(request(vouched=(ci_token_facts(claims),)))  # an empty group is not shown
    assert alone.name == "context"


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_a_hostile_branch_name_in_the_token_is_inert_everywhere(text: str) -> None:
    """A branch name is anyone's text, signed or not: `ref` (and the rest) are escaped by
    every format like any value, as GitHub renders the comment."""
    claims = {**GITHUB_CLAIMS, "ref": text, "sub": f"repo:octo/app:ref:{text}", "actor": text}
    approval = request(vouched=(ci_token_facts(claims),))
    found = gfm.assert_inert(approval_markdown(approval), links={RUN, PULL, approval.link})
    assert one_line(text, 200) in found.text
    slack_mrkdwn.assert_inert(slack_approval(approval)["text"], links={RUN, PULL, approval.link})
    teams = walk(card(teams_approval(approval)))
    assert one_line(text) in [obj["text"] for obj in teams if obj.get("type") == "TextRun"]
    assert json_approval(approval)["ci_token"]["ref"] == one_line(text, 200)


@pytest.mark.parametrize("branch", LOOK_ALIKES_OF_MAIN.values(), ids=LOOK_ALIKES_OF_MAIN.keys())
def test_a_branch_that_only_looks_like_main_is_never_shown_as_main(branch: str) -> None:
    """A branch named `main` plus an invisible character (or a space no one sees at its
    end) is another branch, unprotected, that anyone who can push may create. The claims
    are proved, so an approver trusts them: in no format may it read as `main`."""
    claims = {**GITHUB_CLAIMS, "ref": branch, "sub": f"repo:octo/app:ref:{branch}"}
    approval = request(vouched=(ci_token_facts(claims),))
    shown_as = {
        "markdown": gfm.read(approval_markdown(approval)).code,
        "slack": slack_mrkdwn.read(slack_approval(approval)["text"]).code,
        "teams": [o["text"] for o in walk(card(teams_approval(approval))) if "text" in o],
        "json": list(json_approval(approval)["ci_token"].values()),
    }
    for where, values in shown_as.items():
        seen = {as_seen(value) for value in values if isinstance(value, str)}
        assert MAIN not in seen, f"{where} shows {branch!r} as {MAIN}"
        assert f"repo:octo/app:ref:{MAIN}" not in seen, f"{where}: the subject reads as main's"
