"""CI providers, detected from their environment variables, and what DTF tells each.

GitHub: ``::error`` annotations, the step summary, and a PR comment with a token.
GitLab: an MR note with a token (the JUnit file is the job's report artifact).
Jenkins and the others: the JUnit file, which their JUnit steps read.
HTTP goes only to the provider's own API URL from its environment (tests use a local fake).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cli.pytest.reports import RunReport

# name -> the environment variable that says we run there (first match wins)
DETECT: tuple[tuple[str, str], ...] = (
    ("github", "GITHUB_ACTIONS"), ("gitlab", "GITLAB_CI"), ("jenkins", "JENKINS_URL"),
    ("azure", "TF_BUILD"), ("circleci", "CIRCLECI"), ("teamcity", "TEAMCITY_VERSION"),
    ("travis", "TRAVIS"), ("bitbucket", "BITBUCKET_BUILD_NUMBER"),
)
HTTP_TIMEOUT_S = 15


def detect(env: Mapping[str, str]) -> str | None:
    for name, var in DETECT:
        if env.get(var):
            return name
    return None


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(report: RunReport, limit: int = 50) -> list[str]:
    """``::error file=…,line=…,title=…::message`` per failure (GitHub shows 10 per step)."""
    out = []
    for rec in report.failures()[:limit]:
        props = [f"file={_escape_prop(rec.file)}"] if rec.file else []
        if rec.line:
            props.append(f"line={rec.line}")
        props.append(f"title={_escape_prop(rec.nodeid)}")
        out.append(f"::error {','.join(props)}::{_escape_data(rec.message or rec.outcome)}")
    return out


def _post(url: str, body: dict[str, str], headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
        return int(resp.status)


def _github_pr(env: Mapping[str, str]) -> str | None:
    event = env.get("GITHUB_EVENT_PATH")
    if event and Path(event).is_file():
        try:
            number = json.loads(Path(event).read_text()).get("pull_request", {}).get("number")
            if number:
                return str(int(number))
        except (ValueError, OSError, AttributeError):
            pass
    m = re.fullmatch(r"refs/pull/(\d+)/merge", env.get("GITHUB_REF", ""))
    return m.group(1) if m else None


@dataclass
class Published:
    provider: str | None
    lines: list[str]  # what to print (annotations, notes)
    posted: list[str]  # where comments went


def publish(report: RunReport, markdown: str, env: Mapping[str, str] | None = None,
            ) -> Published:
    env = os.environ if env is None else env
    provider = detect(env)
    lines: list[str] = []
    posted: list[str] = []
    if provider == "github":
        lines += github_annotations(report)
        summary = env.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(markdown)
        token, repo, pr = env.get("DTF_GITHUB_TOKEN") or env.get("GITHUB_TOKEN"), \
            env.get("GITHUB_REPOSITORY"), _github_pr(env)
        if token and repo and pr:
            api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
            url = f"{api}/repos/{repo}/issues/{pr}/comments"
            _post(url, {"body": markdown}, {"Authorization": f"Bearer {token}",
                                            "Accept": "application/vnd.github+json"})
            posted.append(url)
    elif provider == "gitlab":
        iid, project = env.get("CI_MERGE_REQUEST_IID"), env.get("CI_PROJECT_ID")
        token = env.get("DTF_GITLAB_TOKEN")
        if iid and project and (token or env.get("CI_JOB_TOKEN")):
            api = env.get("CI_API_V4_URL", "https://gitlab.com/api/v4").rstrip("/")
            url = f"{api}/projects/{project}/merge_requests/{iid}/notes"
            auth = {"PRIVATE-TOKEN": token} if token else {"JOB-TOKEN": env["CI_JOB_TOKEN"]}
            _post(url, {"body": markdown}, auth)
            posted.append(url)
    return Published(provider, lines, posted)
