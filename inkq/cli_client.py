"""Command-line access to a running inkq service: ``submit``, ``status``, ``results``.

These commands are thin on purpose: every HTTP concern (limits, retries, error
types) lives in :mod:`inkq.client`, so the CLI only turns files into jobs and
results into rows. The main group registers them with::

    for command in COMMANDS:
        cli.add_command(command)

Exit codes are part of the interface, so shell scripts can branch on what
happened without parsing output (see :data:`EXIT_CODES`).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
from tqdm import tqdm

from inkq import errors
from inkq.client import DEFAULT_URL, IMAGE_SUFFIXES, POLL_INTERVAL_S, Client, find_images, is_finished

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FAILED = 4
EXIT_SERVICE = 5
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "all items classified",
    EXIT_USAGE: "usage error (bad option, no image found, unknown output format)",
    EXIT_PARTIAL: "partial success: some items errored",
    EXIT_FAILED: "job failed or was cancelled, or every item errored",
    EXIT_SERVICE: "service unreachable or the API returned an error",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C (jobs keep running)",
}



def exit_help(changes: dict[int, str | None] | None = None) -> str:
    """The exit-code table for a command's ``--help`` epilog; ``None`` drops a code."""
    table = {**EXIT_CODES, **(changes or {})}
    lines = [f"  {code:<4}{text}" for code, text in table.items() if text is not None]
    return "\b\nExit codes:\n" + "\n".join(lines)


OUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
CSV_FIELDS = ("prediction", "confidence", "top5", "error")

Row = dict[str, Any]

#: How the CLI waits between polls; a seam for tests (Ctrl-C simulation).
_sleep = time.sleep


# --------------------------------------------------------------------------- pure helpers


def item_row(key: str, name: Any, item: dict[str, Any] | None, missing: str = "") -> Row:
    """One output row for one input: its name under ``key`` and its result or error.

    ``item`` is None when the job ended before this input was classified
    (cancelled, say); ``missing`` explains why, so no input is silently dropped.
    """
    row: Row = {key: name}
    if item is None:
        row["error"] = {"code": "not_processed", "message": missing or "no result for this item"}
    elif "error" in item:
        row["error"] = item["error"]
    else:
        row["prediction"] = item.get("prediction")
        row["confidence"] = item.get("confidence")
        row["top5"] = item.get("top5", [])
    return row


def job_rows(key: str, names: Sequence[Any], items: Iterable[dict[str, Any]], job: dict[str, Any]) -> list[Row]:
    """Rows for every input of a job, in input order, whether or not it has a result."""
    by_index = {int(item["index"]): item for item in items}
    missing = f"job {job.get('id')} is {job.get('status')} and has no result for this item"
    return [item_row(key, name, by_index.get(i), missing) for i, name in enumerate(names)]


def outcome(jobs: Sequence[dict[str, Any]], rows: Sequence[Row]) -> int:
    """The exit code that sums up finished jobs and their rows."""
    errored = sum(1 for row in rows if "error" in row)
    if any(job.get("status") in ("failed", "cancelled") for job in jobs) or (rows and errored == len(rows)):
        return EXIT_FAILED
    if errored or any(not is_finished(job) for job in jobs):
        return EXIT_PARTIAL
    return EXIT_OK


def format_top5(top5: Sequence[dict[str, Any]]) -> str:
    """Top-5 as one compact CSV cell: ``A:0.9120 H:0.0310 ...``."""
    return " ".join(f"{p['label']}:{float(p['prob']):.4f}" for p in top5)


def csv_cells(row: Row) -> Row:
    """A row flattened for CSV: top5 as text, the error as ``code: message``."""
    flat = dict(row)
    if "top5" in flat:
        flat["top5"] = format_top5(flat["top5"])
    if "error" in flat:
        flat["error"] = f"{flat['error'].get('code')}: {flat['error'].get('message')}"
    if isinstance(flat.get("confidence"), float):
        flat["confidence"] = f"{flat['confidence']:.4f}"
    return flat


def out_format(path: str) -> str:
    """Output format from the file name (``-`` is JSON Lines on stdout)."""
    if path == "-":
        return "jsonl"
    fmt = OUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise click.BadParameter(
            f"{path!r}: use a name ending in {', '.join(OUT_FORMATS)} (or - for stdout)",
            param_hint="--out",
        )
    return fmt


def write_rows(rows: Sequence[Row], key: str, fmt: str, fh: TextIO) -> None:
    """Write rows as CSV, JSON Lines or one JSON array."""
    if fmt == "csv":
        writer = csv.DictWriter(fh, fieldnames=(key, *CSV_FIELDS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(csv_cells(row) for row in rows)
    elif fmt == "json":
        json.dump(list(rows), fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    else:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def summary(rows: Sequence[Row], jobs: Sequence[dict[str, Any]]) -> str:
    """One line for stderr: how many inputs, classified, errored, in how many jobs."""
    errored = sum(1 for row in rows if "error" in row)
    return (f"{_count(len(rows), 'image')}: {len(rows) - errored} classified, {errored} errored "
            f"({_count(len(jobs), 'job')})")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe_job(job: dict[str, Any]) -> str:
    """A job document as a few human-readable lines."""
    lines = [
        f"job       {job.get('id')}",
        f"status    {job.get('status')}",
        (
            f"progress  {job.get('done', 0)}/{job.get('total', 0)} done, "
            f"{job.get('succeeded', 0)} succeeded, {job.get('failed', 0)} failed"
        ),
        f"model     {job.get('model_version')}",
    ]
    for field in ("created_at", "started_at", "finished_at", "expires_at"):
        if job.get(field):
            lines.append(f"{field.split('_')[0]:<10}{job[field]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- shared plumbing


def _server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--url`` and ``--api-key``, each falling back to its environment variable."""
    command = click.option(
        "--api-key",
        envvar="INKQ_API_KEY",
        show_envvar=True,
        default=None,
        help="API key sent as a Bearer token (only if the server has auth on).",
    )(command)
    command = click.option(
        "--url",
        envvar="INKQ_URL",
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        help="Base URL of the inkq API.",
    )(command)
    return command


def _exit(code: int) -> NoReturn:
    """Leave the command with ``code`` the click way (CliRunner and the main group see it)."""
    click.get_current_context().exit(code)
    raise AssertionError("unreachable")  # ctx.exit always raises


def _fail(exc: errors.InkqError) -> NoReturn:
    """Report an API or connection error on stderr and exit with the service code."""
    click.echo(f"error: {exc.code}: {exc.message}", err=True)
    _exit(EXIT_SERVICE)


def _wait_all(client: Client, jobs: list[dict[str, Any]], poll_interval_s: float) -> list[dict[str, Any]]:
    """Poll every job until all finish, with one tqdm bar over all their images."""
    current = {job["id"]: job for job in jobs}
    total = sum(int(job.get("total", 0)) for job in jobs)
    already = sum(int(job.get("done", 0)) for job in jobs)
    with tqdm(total=total, initial=already, unit="img", desc="classifying", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            for job_id, job in current.items():
                if not is_finished(job):
                    current[job_id] = client.job(job_id)
            done = sum(int(job.get("done", 0)) for job in current.values())
            failed = sum(int(job.get("failed", 0)) for job in current.values())
            bar.update(done - bar.n)
            bar.set_postfix(errors=failed, refresh=False)
            if all(is_finished(job) for job in current.values()):
                return [current[job["id"]] for job in jobs]
            _sleep(poll_interval_s)


def _interrupted(jobs: Sequence[dict[str, Any]], url: str, out: str | None) -> NoReturn:
    """Tell the user the jobs live on and how to collect them; exit 130."""
    target = f" --out {out}" if out and out != "-" else ""
    url_opt = f" --url {url}" if url != DEFAULT_URL else ""
    click.echo("\nInterrupted. The jobs keep running on the server; fetch their results later with:", err=True)
    for job in jobs:
        names = job.get("files") or []
        span = f"   # {names[0]} .. {names[-1]}" if names else ""
        click.echo(f"  inkq results {job['id']}{url_opt}{target}{span}", err=True)
    click.echo("(result 'index' i of a job is the i-th file it holds, in sorted order)", err=True)
    _exit(EXIT_INTERRUPTED)


def _emit(rows: Sequence[Row], key: str, out: str | None) -> None:
    """Write rows to ``--out`` (format from its suffix) or as JSON Lines on stdout."""
    if out is None or out == "-":
        write_rows(rows, key, "jsonl", sys.stdout)
        return
    fmt = out_format(out)
    with open(out, "w", encoding="utf-8", newline="" if fmt == "csv" else None) as fh:
        write_rows(rows, key, fmt, fh)
    click.echo(f"wrote {len(rows)} rows to {out}", err=True)


# --------------------------------------------------------------------------- commands


@click.command(epilog=exit_help())
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--wait", "wait_", is_flag=True, help="Wait for the jobs, showing progress, then write results.")
@click.option(
    "--out",
    type=str,
    default=None,
    help="Results file for --wait: .csv, .jsonl or .json (default: JSON Lines on stdout).",
)
@click.option("--poll-interval", type=float, default=POLL_INTERVAL_S, show_default=True, help="Seconds between polls.")
@_server_options
def submit(
    paths: tuple[str, ...], wait_: bool, out: str | None, poll_interval: float, url: str, api_key: str | None
) -> None:
    """Classify images: PATHs are files or folders (searched recursively, sorted,
    for .png, .jpg, .jpeg, .webp, .gif and .bmp files).

    The images are split into as few jobs as the server's limits allow
    (GET /v1/limits). Without --wait the job ids are printed, one per line.
    With --wait a progress bar runs until every job finishes, then one row
    per file is written in input order: file, prediction, confidence, top5
    (or error). Ctrl-C while waiting leaves the jobs running and prints the
    `inkq results` commands that fetch them later.

    \b
    Examples:
      inkq submit scans/ --wait --out results.csv
      inkq submit a.png b.png --url http://inkq.local:8000
      JOB=$(inkq submit drawings/) && inkq status "$JOB"
    """
    if out is not None:
        out_format(out)  # a bad name is a usage error before anything is sent
    try:
        files = find_images(paths)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    if not files:
        raise click.UsageError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {' '.join(paths)}")
    jobs: list[dict[str, Any]] = []
    try:
        with Client(url, api_key=api_key) as client:
            jobs = client.submit_files(files)
            if not wait_:
                for job in jobs:
                    click.echo(job["id"])
                click.echo(f"submitted {_count(len(files), 'image')} as {_count(len(jobs), 'job')}; "
                           "follow with `inkq status JOB`", err=True)
                _exit(EXIT_OK)
            try:
                finished = _wait_all(client, jobs, poll_interval)
            except KeyboardInterrupt:
                _interrupted(jobs, url, out)
            rows: list[Row] = []
            for job, done in zip(jobs, finished):
                rows.extend(job_rows("file", job["files"], client.results(job["id"]), done))
    except errors.InkqError as exc:
        _fail(exc)
    _emit(rows, "file", out)
    click.echo(summary(rows, finished), err=True)
    _exit(outcome(finished, rows))


@click.command(
    epilog=exit_help({
        EXIT_OK: "job found: queued, running or succeeded",
        EXIT_USAGE: "usage error",
        EXIT_PARTIAL: "job partially succeeded (some items errored)",
        EXIT_FAILED: "job failed or was cancelled",
        EXIT_INTERRUPTED: None,
    })
)
@click.argument("job_id", metavar="JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the raw job document as JSON.")
@_server_options
def status(job_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Show a job's status and progress.

    The exit code follows the job: 0 while it is queued or running and when
    it succeeded, 3 when it partially succeeded, 4 when it failed or was
    cancelled.

    \b
    Examples:
      inkq status 3f9c2a7e
      inkq status 3f9c2a7e --json | jq .done
    """
    try:
        with Client(url, api_key=api_key) as client:
            job = client.job(job_id)
    except errors.InkqError as exc:
        _fail(exc)
    click.echo(json.dumps(job, indent=1) if as_json else describe_job(job))
    code = {"partially_succeeded": EXIT_PARTIAL, "failed": EXIT_FAILED, "cancelled": EXIT_FAILED}
    _exit(code.get(str(job.get("status")), EXIT_OK))


@click.command(
    epilog=exit_help({
        EXIT_USAGE: "usage error (bad option, unknown output format)",
        EXIT_PARTIAL: "partial success: some items errored, or --no-wait on an unfinished job",
    })
)
@click.argument("job_id", metavar="JOB")
@click.option(
    "--out",
    type=str,
    default=None,
    help="Results file: .csv, .jsonl or .json (default: JSON Lines on stdout).",
)
@click.option(
    "--wait/--no-wait",
    "wait_",
    default=True,
    show_default=True,
    help="Wait for the job to finish first (--no-wait: only the items finished so far).",
)
@click.option("--poll-interval", type=float, default=POLL_INTERVAL_S, show_default=True, help="Seconds between polls.")
@_server_options
def results(job_id: str, out: str | None, wait_: bool, poll_interval: float, url: str, api_key: str | None) -> None:
    """Write a job's results, one row per image in input order.

    Rows carry the image's `index` in the job, then prediction, confidence
    and top5, or error.

    \b
    Examples:
      inkq results 3f9c2a7e --out results.csv
      inkq results 3f9c2a7e --no-wait | head
    """
    if out is not None:
        out_format(out)
    try:
        with Client(url, api_key=api_key) as client:
            job = client.job(job_id)
            if wait_ and not is_finished(job):
                try:
                    job = _wait_all(client, [job], poll_interval)[0]
                except KeyboardInterrupt:
                    _interrupted([job], url, out)
            elif not is_finished(job):
                click.echo(
                    f"job {job_id} is {job.get('status')} ({job.get('done')}/{job.get('total')} done); "
                    "showing finished items only",
                    err=True,
                )
            items = list(client.results(job_id))
    except errors.InkqError as exc:
        _fail(exc)
    if is_finished(job):
        rows = job_rows("index", range(int(job.get("total", 0))), items, job)
    else:
        rows = [item_row("index", item["index"], item) for item in items]
    _emit(rows, "index", out)
    click.echo(summary(rows, [job]), err=True)
    _exit(outcome([job], rows))


COMMANDS = [submit, status, results]
