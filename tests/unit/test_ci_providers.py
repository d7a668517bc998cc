from pathlib import Path

import pytest

from cli.ci.providers import detect, github_annotations, publish
from cli.pytest.reports import Record, RunReport, markdown
from tests.fake_http import fake_api


@pytest.mark.parametrize(("env", "name"), [
    ({"GITHUB_ACTIONS": "true"}, "github"), ({"GITLAB_CI": "true"}, "gitlab"),
    ({"JENKINS_URL": "http://j"}, "jenkins"), ({"TF_BUILD": "True"}, "azure"),
    ({"CIRCLECI": "true"}, "circleci"), ({"TEAMCITY_VERSION": "2024"}, "teamcity"),
    ({"TRAVIS": "true"}, "travis"), ({"BITBUCKET_BUILD_NUMBER": "7"}, "bitbucket"),
    ({}, None),
])
def test_providers_are_detected_from_their_environment(env: dict[str, str],
                                                       name: str | None) -> None:
    assert detect(env) == name


def failing_report() -> RunReport:
    report = RunReport(run_id="r-1", exit_code=1, finished=1.0, started=0.0)
    report.records["tests/test_a.py::test_x"] = Record(
        "tests/test_a.py::test_x", "failed", 0.1, "tests/test_a.py", 12,
        "AssertionError: a, b\n100%", "Traceback ...")
    report.records["tests/test_a.py::test_y"] = Record("tests/test_a.py::test_y")
    return report


def test_github_annotations_escape_what_github_parses() -> None:
    (line,) = github_annotations(failing_report())
    assert line == ("::error file=tests/test_a.py,line=12,title=tests/test_a.py%3A%3Atest_x::"
                    "AssertionError: a, b%0A100%25")


def test_github_summary_and_pr_comment(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    report = failing_report()
    with fake_api() as api:
        env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
               "GITHUB_TOKEN": "ghs_secret", "GITHUB_REPOSITORY": "acme/app",
               "GITHUB_REF": "refs/pull/7/merge", "GITHUB_API_URL": api.url}
        published = publish(report, markdown(report), env)
    assert published.provider == "github" and len(published.lines) == 1
    assert "Failures (1)" in summary.read_text()
    (req,) = api.requests
    assert req.path == "/repos/acme/app/issues/7/comments"
    assert req.headers["authorization"] == "Bearer ghs_secret"
    assert "1 failed, 1 passed" in req.body["body"]


def test_github_without_a_pull_request_does_not_comment(tmp_path: Path) -> None:
    with fake_api() as api:
        env = {"GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "a/b",
               "GITHUB_REF": "refs/heads/main", "GITHUB_API_URL": api.url}
        publish(failing_report(), "md", env)
    assert api.requests == []


def test_gitlab_merge_request_note() -> None:
    with fake_api() as api:
        env = {"GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "5", "CI_PROJECT_ID": "42",
               "CI_JOB_TOKEN": "job-token", "CI_API_V4_URL": api.url + "/api/v4"}
        published = publish(failing_report(), "the note", env)
    (req,) = api.requests
    assert req.path == "/api/v4/projects/42/merge_requests/5/notes"
    assert req.headers["job-token"] == "job-token" and req.body == {"body": "the note"}
    assert published.posted == [api.url + "/api/v4/projects/42/merge_requests/5/notes"]


def test_jenkins_gets_junit_only() -> None:
    with fake_api() as api:
        published = publish(failing_report(), "md", {"JENKINS_URL": api.url})
    assert published.provider == "jenkins" and published.lines == [] and api.requests == []
