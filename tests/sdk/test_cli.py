"""The `zako` command: argument parsing, output, exit codes (against the scripted fake)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_streams import FakeServer, script, unused_target

from zako_sdk._cli_args import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TASK_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    build_parser,
)
from zako_sdk.cli import main


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def js(tmp_path: Path):
    def write(source: str, name: str = "task.js") -> str:
        path = tmp_path / name
        path.write_text(source, encoding="utf-8")
        return str(path)

    return write


def test_run_arguments_parse():
    args = build_parser("h:1").parse_args(
        [
            "run",
            "f.js",
            "--module",
            "lib/a.js=src/a.js",
            "--module",
            "b=b.js",
            "--label",
            "k=v=w",
            "--context",
            "config",
            "--timeout",
            "2.5",
            "--system-access",
            "--priority",
            "-1",
            "--input",
            '{"a": 1}',
            "--fresh-isolate",
        ]
    )
    assert args.fresh_isolate and not build_parser("h:1").parse_args(["run", "f"]).fresh_isolate
    assert args.target == "h:1" and args.file == "f.js"
    assert args.module == [("lib/a.js", "src/a.js"), ("b", "b.js")]
    assert args.label == [("k", "v=w")]
    assert (args.context, args.timeout, args.system_access, args.priority) == (
        "config",
        2.5,
        True,
        -1,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "f.js", "--label", "novalue"],
        ["run", "f.js", "--context", "shell"],
        ["run", "f.js", "--input", "1", "--input-file", "x"],
        ["run", "f.js", "--compact", "--full"],
        [],
    ],
)
def test_bad_command_lines_exit_2(argv, capsys):
    assert main(argv) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    assert main(["run", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "exit status" in out and "rejected" in out and "ZAKO_TARGET" in out


def test_unreadable_input_is_a_usage_error(js, capsys, tmp_path):
    path = js(script("echo"))
    assert main(["run", path, "--input", "{nope", "--target", unused_target()]) == EXIT_USAGE
    assert "--input is not valid JSON" in capsys.readouterr().err
    missing = str(tmp_path / "missing.js")
    assert main(["run", missing, "--target", unused_target()]) == EXIT_USAGE
    assert "cannot read file" in capsys.readouterr().err


def test_run_prints_the_value_and_streams_logs_to_stderr(fake, js, capsys):
    path = js(script("echo", logs=["hello"]))
    assert main(["run", path, "--target", fake.target, "--input", '{"n": [1, 2]}']) == EXIT_OK
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"n": [1, 2]}
    assert captured.err == "hello\n"


def test_run_compact_prints_the_servers_text(fake, js, capsys):
    assert (
        main(
            ["run", js(script("echo")), "--target", fake.target, "--input", "[1,  2]", "--compact"]
        )
        == EXIT_OK
    )
    assert capsys.readouterr().out == "[1,2]\n"


def test_run_full_prints_the_whole_result(fake, js, capsys, tmp_path):
    (tmp_path / "in.json").write_text('"x"')
    assert (
        main(
            [
                "run",
                js(script("echo", logs=["l"])),
                "--target",
                fake.target,
                "--input-file",
                str(tmp_path / "in.json"),
                "--full",
            ]
        )
        == EXIT_OK
    )
    full = json.loads(capsys.readouterr().out)
    assert full["value"] == "x" and full["worker_id"] == "w1"
    assert full["logs"][0]["message"] == "l" and "run_s" in full["timings"]


def test_run_fresh_isolate_asks_for_one_and_full_shows_the_isolate(fake, js, capsys):
    path = js(script("echo"))
    assert main(["run", path, "--target", fake.target, "--full", "--fresh-isolate"]) == EXIT_OK
    fresh = json.loads(capsys.readouterr().out)
    assert fake.executor.fresh[fresh["task_id"]] is True
    assert fresh["timings"]["warm_isolate"] is False
    assert main(["run", path, "--target", fake.target, "--full"]) == EXIT_OK
    warm = json.loads(capsys.readouterr().out)
    assert fake.executor.fresh[warm["task_id"]] is False
    assert warm["timings"]["warm_isolate"] is True


def test_capabilities_show_isolate_reuse(fake, capsys):
    assert main(["capabilities", "--target", fake.target]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["isolate_reuse"] is True


def test_failed_task_prints_the_stack_and_exits_1(fake, js, capsys):
    assert main(["run", js(script("throw", message="boom")), "--target", fake.target]) == (
        EXIT_TASK_FAILED
    )
    captured = capsys.readouterr()
    assert captured.out == "" and "Error: boom\n    at main.js:2:9" in captured.err


def test_rejected_task_exits_3(fake, js, capsys):
    assert main(["run", js(script("reject", code=3)), "--target", fake.target]) == EXIT_REJECTED
    assert "rejected" in capsys.readouterr().err


def test_unreachable_server_exits_4(js, capsys, monkeypatch):
    monkeypatch.setenv("ZAKO_TARGET", unused_target())  # the default --target comes from here
    assert main(["run", js(script("echo"))]) == EXIT_UNAVAILABLE
    assert "cannot reach the server" in capsys.readouterr().err


def test_stats_prints_json_with_field_names_as_in_the_proto(fake, capsys):
    assert main(["stats", "--json", "--target", fake.target]) == EXIT_OK
    stats = json.loads(capsys.readouterr().out)
    assert stats["pool"]["max_workers"] == 2
    assert stats["pool"]["busy"] == 0  # zeros are printed, not dropped


def test_cancel_of_an_unknown_task_fails_with_exit_4(fake, capsys):
    assert main(["cancel", "nope", "--target", fake.target]) == EXIT_UNAVAILABLE
    assert "NOT_FOUND" in capsys.readouterr().err
