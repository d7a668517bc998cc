"""Browser tasks: the config is checked at submit, `dtf submit --browser` builds it, and the
worker serves only files inside the task's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.worker.browser import serve
from cli.args import parser, specs_from_args
from dtf_core.browser_shards import shard_run
from dtf_core.errors import InvalidInput
from dtf_core.spec import TaskSpec, parse_specs


def test_a_browser_task_requires_a_browser_worker() -> None:
    spec, = parse_specs(b'{"type": "browser", "config": {"page": "t/page.html"}, '
                        b'"requirements": {"hardware": ["webgpu"]}}')
    assert spec.requirements.hardware == ("webgpu", "browser")


@pytest.mark.parametrize(("config", "match"), [
    ('{}', "a `page` or a `module`"),
    ('{"page": "a.html", "module": "m.js"}', "not both"),
    ('{"page": "../a.html"}', "relative path inside"),
    ('{"page": "/etc/passwd"}', "relative path inside"),
    ('{"module": "https://cdn.example/m.js"}', "not a URL"),
    ('{"page": "a.html", "argv": ["x"]}', "unknown field"),
])
def test_bad_browser_configs_are_refused(config: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_specs(f'{{"type": "browser", "config": {config}}}'.encode())


def test_dtf_submit_browser(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("<p>")

    def specs(*flags: str) -> list:  # type: ignore[type-arg]
        return specs_from_args(parser().parse_args(["submit", *flags]), None)

    spec, = specs("--browser", str(tmp_path / "page.html"), "--cwd", str(tmp_path),
                  "--timeout", "30", "--retries", "1")
    assert (spec.type, spec.config, spec.timeout_seconds, spec.retry_policy.max_retries) == (
        "browser", {"page": "page.html", "cwd": str(tmp_path)}, 30.0, 1)
    spec, = specs("--browser-module", "m.js", "--cwd", str(tmp_path))
    assert spec.config["module"] == "m.js"
    assert specs("--browser", "https://example.org/t.html")[0].config["page"] == \
        "https://example.org/t.html"
    with pytest.raises(InvalidInput, match="outside"):
        specs("--browser", "/etc/hosts", "--cwd", str(tmp_path))
    with pytest.raises(InvalidInput, match="not both"):
        specs("--browser", "a.html", "--browser-module", "m.js")


def test_only_files_inside_the_task_directory_are_served(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "m.js").write_text("export default 1")
    (tmp_path / "secret.txt").write_text("no")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    assert serve.local_file(root, f"{serve.ORIGIN}/sub/m.js") == root / "sub" / "m.js"
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/link", "/sub", "/absent.js", "/"):
        assert serve.local_file(root, serve.ORIGIN + path) is None, path
    reply = serve.response(root, f"{serve.ORIGIN}/sub/m.js", None)
    assert reply["responseCode"] == 200
    assert {"name": "Content-Type", "value": "text/javascript"} in reply["responseHeaders"]
    assert serve.response(root, f"{serve.ORIGIN}/absent.js", None)["responseCode"] == 404
    assert serve.entry_url("a b.html?x=1#y", None) == f"{serve.ORIGIN}/a%20b.html?x=1#y"
    assert serve.entry_url(None, "m.js") == serve.ORIGIN + serve.MODULE_PAGE


def test_params_join_the_query() -> None:
    assert serve.entry_url("t.html?a=1#h", None, {"shard": "2", "x": "a b"}) == \
        f"{serve.ORIGIN}/t.html?a=1&shard=2&x=a+b#h"
    assert serve.entry_url(None, "m.js", {"shard": "0"}) == \
        f"{serve.ORIGIN}{serve.MODULE_PAGE}?shard=0"
    with pytest.raises(InvalidInput, match="params"):
        parse_specs(b'{"type": "browser", "config": {"page": "a.html", "params": {"a b": "1"}}}')


def test_a_sharded_run_is_n_browser_tasks_and_a_merge_depending_on_them() -> None:
    shard, merge = parse_specs(b'[{"type": "browser", "config": {"module": "s.js", '
                               b'"params": {"model": "tiny"}}, "retry_policy": {"max_retries": 1}},'
                               b'{"type": "browser", "config": {"module": "merge.js"}}]')
    specs = shard_run(shard, 3, "bs-1", merge)
    assert [s.id for s in specs] == ["bs-1-0", "bs-1-1", "bs-1-2", "bs-1-merge"]
    assert [s.config["params"] for s in specs[:3]] == [
        {"model": "tiny", "shard": str(i), "shards": "3"} for i in range(3)]
    assert all(s.retry_policy.max_retries == 1 for s in specs[:3])
    assert specs[3].dependencies == ("bs-1-0", "bs-1-1", "bs-1-2")
    assert specs[3].config["params"] == {"shards": "3", "tasks": "bs-1-0,bs-1-1,bs-1-2"}
    assert len(shard_run(shard, 2, "bs-2")) == 2  # no merge
    with pytest.raises(InvalidInput, match="between 1 and"):
        shard_run(shard, 0, "bs-3")
    with pytest.raises(InvalidInput, match="only browser"):
        shard_run(TaskSpec(type="noop"), 2, "bs-4")


def test_dtf_submit_shards(tmp_path: Path) -> None:
    args = parser().parse_args(["submit", "--browser-module", "s.js", "--shards", "2",
                                "--merge-page", "merge.html", "--cwd", str(tmp_path)])
    specs = specs_from_args(args, None)
    assert [s.config.get("module") or s.config.get("page") for s in specs] == [
        "s.js", "s.js", "merge.html"]
    assert specs[2].dependencies == (specs[0].id, specs[1].id)
    with pytest.raises(InvalidInput, match="go with --browser"):
        specs_from_args(parser().parse_args(["submit", "--shards", "2"]), ["true"])
    with pytest.raises(InvalidInput, match="go with --shards"):
        specs_from_args(parser().parse_args(["submit", "--browser", "a.html",
                                             "--merge-page", "m.html"]), None)


def test_a_page_without_its_directory_is_refused_never_served_from_the_worker(
        tmp_path: Path) -> None:
    from agents.worker.browser.attempt import missing_entry
    from dtf_core.browser_spec import BrowserConfig

    assert "no directory to be served from" in missing_entry(BrowserConfig(page="a.html"), None)
    assert missing_entry(BrowserConfig(page="https://example.org/t.html"), None) == ""
    assert "does not exist on" in missing_entry(BrowserConfig(module="m.js", host="elsewhere"),
                                                tmp_path / "gone")
    (tmp_path / "a.html").write_text("<p>")
    assert missing_entry(BrowserConfig(page="a.html?x=1"), tmp_path) == ""
    assert "no file b.html" in missing_entry(BrowserConfig(page="b.html"), tmp_path)
