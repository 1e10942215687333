"""Tests of the ``inkq submit / status / results`` commands (:mod:`inkq.cli_client`).

The commands run through click's ``CliRunner`` in the real ``inkq`` group, and
once as a real process, against the real service.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from inkq import cli_client
from inkq.cli import cli as inkq
from inkq.cli_client import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SERVICE,
    EXIT_USAGE,
    csv_cells,
    job_rows,
    out_format,
    outcome,
    write_rows,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_main_group_registers_the_client_commands():
    assert all(inkq.commands.get(command.name) is command for command in COMMANDS)


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(inkq, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def png_folder(tmp_path: Path, clear_pngs) -> tuple[Path, list[tuple[str, str]]]:
    """A folder of clear PNGs, some in a subfolder, plus a non-PNG that must be ignored.

    Returns the folder and ``(relative path, label)`` in the order the CLI must keep.
    """
    folder = tmp_path / "drawings"
    (folder / "more").mkdir(parents=True)
    expected = []
    for i, (png, label) in enumerate(clear_pngs[:6]):
        rel = f"{'more/' if i % 2 else ''}{i:02d}.png"
        (folder / rel).write_bytes(png)
        expected.append((rel, label))
    (folder / "readme.txt").write_text("not an image")
    return folder, sorted(expected)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- against the real service


def test_submit_wait_writes_csv_rows_in_order(live_service, png_folder, tmp_path):
    folder, expected = png_folder
    out = tmp_path / "x.csv"
    result = run("submit", str(folder), "--wait", "--out", str(out), "--url", live_service.url)
    assert result.exit_code == EXIT_OK, result.output
    rows = read_csv(out)
    assert [Path(r["file"]).relative_to(folder).as_posix() for r in rows] == [rel for rel, _ in expected]
    assert list(rows[0]) == ["file", "prediction", "confidence", "top5", "error"]
    right = sum(r["prediction"] == label for r, (_, label) in zip(rows, expected))
    assert right >= 0.8 * len(rows), rows
    for row in rows:
        assert row["error"] == "" and 0 < float(row["confidence"]) <= 1
        assert len(row["top5"].split()) == 5 and row["top5"].startswith(row["prediction"] + ":")
    assert f"{len(rows)} images: {len(rows)} classified, 0 errored" in result.output


def test_submit_as_a_real_process(live_service, png_folder, tmp_path):
    """The console-script path: stdout, stderr and the exit status of a real process."""
    folder, expected = png_folder
    out = tmp_path / "real.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "inkq.cli", "submit", str(folder), "--wait", "--out", str(out)],
        env={**_environ(), "INKQ_URL": live_service.url}, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stdout == ""  # with --out, rows go to the file and progress to stderr
    assert "classifying" in proc.stderr and f"wrote {len(expected)} rows" in proc.stderr
    assert len(read_csv(out)) == len(expected)


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("INKQ_URL", "INKQ_API_KEY")}


def test_submit_with_a_bad_file_is_partial_success(live_service, png_folder, tmp_path):
    folder, expected = png_folder
    (folder / "zz-broken.png").write_bytes(b"this is not a png")
    out = tmp_path / "x.jsonl"
    result = run("submit", str(folder), "--wait", "--out", str(out), env={"INKQ_URL": live_service.url})
    assert result.exit_code == EXIT_PARTIAL, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(expected) + 1
    assert rows[-1]["file"].endswith("zz-broken.png")
    assert rows[-1]["error"]["code"] in ("invalid_image", "unsupported_format")
    assert all("prediction" in row for row in rows[:-1])


def test_submit_splits_into_jobs_and_prints_ids(live_service, png_folder, monkeypatch):
    folder, expected = png_folder
    real_limits = cli_client.Client.limits
    monkeypatch.setattr(cli_client.Client, "limits", lambda self: {**real_limits(self), "max_images_per_job": 4})
    result = run("submit", str(folder), "--url", live_service.url)
    assert result.exit_code == EXIT_OK, result.output
    ids = result.stdout.split()
    assert len(ids) == 2 and ids[0] != ids[1]

    status = run("status", ids[1], "--url", live_service.url, "--json")
    assert status.exit_code in (EXIT_OK,), status.output
    assert json.loads(status.stdout)["total"] == len(expected) - 4

    results = run("results", ids[0], "--url", live_service.url)  # waits by default
    assert results.exit_code == EXIT_OK, results.output
    rows = [json.loads(line) for line in results.stdout.splitlines()]
    assert [row["index"] for row in rows] == [0, 1, 2, 3]
    assert [row["prediction"] for row in rows] == [label for _, label in expected[:4]]


def test_ctrl_c_while_waiting_leaves_jobs_and_says_how_to_fetch(live_service, png_folder, monkeypatch):
    folder, _ = png_folder

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_client, "_sleep", interrupt)
    result = run("submit", str(folder), "--wait", "--out", "later.csv", "--url", live_service.url)
    assert result.exit_code == EXIT_INTERRUPTED
    assert "keep running" in result.output and "inkq results " in result.output
    job_id = result.output.split("inkq results ", 1)[1].split()[0]
    monkeypatch.undo()
    assert run("results", job_id, "--url", live_service.url).exit_code == EXIT_OK


def test_unknown_job_is_an_api_error(live_service):
    result = run("status", "no-such-job-0000", "--url", live_service.url)
    assert result.exit_code == EXIT_SERVICE
    assert "job_not_found" in result.output


# --------------------------------------------------------------------------- without a service


def test_unreachable_service_exits_5(tmp_path, clear_pngs, monkeypatch):
    monkeypatch.setattr(cli_client.Client, "__init__", _no_retry_init(cli_client.Client.__init__))
    (tmp_path / "a.png").write_bytes(clear_pngs[0][0])
    result = run("submit", str(tmp_path), "--url", "http://127.0.0.1:9")
    assert result.exit_code == EXIT_SERVICE
    assert "cannot reach the inkq service" in result.output


def _no_retry_init(init):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "retries": 0})

    return patched


def test_the_summary_counts_in_words():
    from inkq.cli_client import summary

    one = [{"file": "a.png", "prediction": "A"}]
    assert summary(one, [{}]) == "1 image: 1 classified, 0 errored (1 job)"
    two = one + [{"file": "b.png", "error": {"code": "blank_image"}}]
    assert summary(two, [{}, {}]) == "2 images: 1 classified, 1 errored (2 jobs)"


def test_usage_errors_exit_2(tmp_path):
    assert run("submit", str(tmp_path / "missing")).exit_code == EXIT_USAGE
    (tmp_path / "notes.txt").write_text("x")
    no_png = run("submit", str(tmp_path))
    assert no_png.exit_code == EXIT_USAGE and "no image files" in no_png.output
    (tmp_path / "a.png").write_bytes(b"x")
    assert run("submit", str(tmp_path), "--wait", "--out", "x.xlsx").exit_code == EXIT_USAGE
    assert run("submit").exit_code == EXIT_USAGE


@pytest.mark.parametrize("command", ["submit", "status", "results"])
def test_help_shows_an_example_and_exit_codes(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert f"inkq {command} " in result.output.split("Examples:", 1)[1]
    assert "Exit codes:" in result.output and "INKQ_URL" in result.output


def test_rows_fill_gaps_and_outcome_sums_up():
    job = {"id": "j", "status": "cancelled"}
    items = [{"index": 0, "prediction": "A", "confidence": 0.9, "top5": [{"label": "A", "prob": 0.9}]},
             {"index": 2, "error": {"code": "blank_image", "message": "blank"}}]
    rows = job_rows("file", ["a.png", "b.png", "c.png"], items, job)
    assert [r["file"] for r in rows] == ["a.png", "b.png", "c.png"]
    assert rows[1]["error"]["code"] == "not_processed" and rows[2]["error"]["code"] == "blank_image"
    assert outcome([job], rows) == EXIT_FAILED
    assert outcome([{"status": "partially_succeeded"}], rows) == EXIT_PARTIAL
    assert outcome([{"status": "succeeded"}], rows[:1]) == EXIT_OK
    assert outcome([{"status": "succeeded"}], rows[1:]) == EXIT_FAILED  # every item errored
    assert csv_cells(rows[0])["top5"] == "A:0.9000" and csv_cells(rows[2])["error"] == "blank_image: blank"


def test_output_formats():
    assert [out_format(n) for n in ("a.csv", "a.JSONL", "a.json", "-")] == ["csv", "jsonl", "json", "jsonl"]
    with pytest.raises(click.BadParameter):
        out_format("a.txt")
    buf = io.StringIO()
    write_rows([{"file": "a.png", "error": {"code": "x", "message": "y"}}], "file", "json", buf)
    assert json.loads(buf.getvalue()) == [{"file": "a.png", "error": {"code": "x", "message": "y"}}]
