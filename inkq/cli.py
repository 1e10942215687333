"""The ``inkq`` command: run the service or its halves, train, evaluate, and use it.

Heavy imports (Celery workers, numpy, scikit-learn, gunicorn) happen inside the
commands that need them, so ``inkq --help`` and the client commands stay quick.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .settings import ROOT, Settings, table

DEFAULT_DATA_DIR = ROOT.parent / "shared" / "emnist"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """inkq: queue-backed batch handwriting recognition.

    \b
    Run everything on this machine:   inkq up
    Submit a folder of images:        inkq submit drawings/ --wait --out results.csv
    """


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8000, show_default=True, help="Port the API listens on.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: CPU count).")
def up(host: str, port: int, workers: int | None) -> None:
    """Run the whole service in the foreground: Redis, workers and the API.

    Without REDIS_URL an embedded Redis is started with its data in
    INKQ_DATA_DIR. Ctrl-C or SIGTERM stops everything.

    \b
    Example:
      inkq up --port 8000 --workers 2
    """
    from .logs import configure
    from .supervisor import run

    s = Settings.from_env()
    configure(s.log_level, s.log_format)
    sys.exit(run(s, host, port, workers))


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, or INKQ_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default 8000, or INKQ_API_PORT).")
def api(host: str | None, port: int | None) -> None:
    """Run only the HTTP API, under gunicorn (configured from the environment).

    \b
    Example:
      REDIS_URL=redis://redis:6379/0 inkq api --host 0.0.0.0 --port 8000
    """
    from .logs import configure
    from .wsgi_server import serve

    s = Settings.from_env()
    configure(s.log_level, s.log_format)
    host = host or os.environ.get("INKQ_API_HOST", "127.0.0.1")
    port = port or int(os.environ.get("INKQ_API_PORT", "8000"))
    serve(s, host, port)


@cli.command()
@click.option("--concurrency", "-c", type=int, default=None,
              help="Pool processes (default INKQ_WORKER_CONCURRENCY, else CPU count).")
@click.option("--queues", "-Q", type=click.Choice(["all", "predict", "bulk"]), default="all",
              show_default=True,
              help="all: single predictions first, then bulk chunks; predict: a dedicated "
                   "low-latency worker for /predict; bulk: chunks only.")
def worker(concurrency: int | None, queues: str) -> None:
    """Run only a Celery worker holding the model (configured from the environment).

    \b
    Example:
      REDIS_URL=redis://redis:6379/0 inkq worker --concurrency 2
      REDIS_URL=redis://redis:6379/0 inkq worker --queues predict --concurrency 1
    """
    from .queue import BULK_QUEUE, PREDICT_QUEUE

    s = Settings.from_env()
    n = concurrency or s.worker_concurrency or os.cpu_count() or 1
    # Order matters: the predict queue is always consumed first.
    names = {"all": f"{PREDICT_QUEUE},{BULK_QUEUE}", "predict": PREDICT_QUEUE, "bulk": BULK_QUEUE}
    _run_celery_worker(s, names[queues], "prefork", n, f"inkq-{queues}")


@cli.command()
@click.option("--concurrency", "-c", type=int, default=8, show_default=True,
              help="Deliveries in flight at once (threads).")
def notifier(concurrency: int) -> None:
    """Run the webhook notifier: delivers completion webhooks, with retries.

    A thread pool that only waits on the network, so slow receivers never hold a
    process that classifies images. Needs no model.

    \b
    Example:
      REDIS_URL=redis://redis:6379/0 INKQ_WEBHOOK_SECRET=... inkq notifier
    """
    from .queue import WEBHOOK_QUEUE

    _run_celery_worker(Settings.from_env(), WEBHOOK_QUEUE, "threads", concurrency, "inkq-notifier",
                       classifies=False)


def _run_celery_worker(s: Settings, queues: str, pool: str, concurrency: int, name: str,
                       classifies: bool = True) -> None:
    from .logs import configure

    configure(s.log_level, s.log_format)
    import worker.celery_app as celery_app

    celery_app.CLASSIFIES = classifies
    celery_app.app.worker_main([
        "worker", f"--loglevel={s.log_level}", "-Q", queues,
        f"--concurrency={concurrency}", f"--pool={pool}",
        "--without-gossip", "--without-mingle",
        "-n", f"{name}-{os.getpid()}@%h",
    ])


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_DATA_DIR,
              show_default=True, help="Folder with the EMNIST gzip IDX files.")
@click.option("--prefix", default="emnist-47", show_default=True,
              help="File name prefix (emnist-balanced for the official files).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Artifact to write (default INKQ_MODEL_PATH); the model card goes beside it.")
@click.option("--limit", type=int, default=None, help="Train on only this many images (quick runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help="Override the number of training epochs.")
def train(data_dir: Path, prefix: str, out: Path | None, limit: int | None, seed: int,
          epochs: int | None) -> None:
    """Train the model on EMNIST and write the artifact and its model card.

    \b
    Example:
      inkq train --data-dir ../shared/emnist
      inkq train --data-dir ~/emnist --prefix emnist-balanced --out /tmp/m.joblib
    """
    from worker.train import train as run_train

    out = out or Settings.from_env().model_path
    kwargs = {"prefix": prefix, "limit": limit, "seed": seed,
              "command": "inkq train " + " ".join(sys.argv[2:])}
    if epochs is not None:
        kwargs["epochs"] = epochs
    card = run_train(data_dir, out, **kwargs)
    click.echo(f"wrote {out} (sha256 {(card.get('artifact') or {}).get('sha256', '?')[:12]})")


@cli.command("eval")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_DATA_DIR,
              show_default=True)
@click.option("--prefix", default="emnist-47", show_default=True)
@click.option("--model", "model_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Artifact to evaluate (default INKQ_MODEL_PATH).")
@click.option("--limit", type=int, default=None, help="Evaluate only this many test images.")
@click.option("--confusion", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the confusion matrix as a PNG here.")
@click.option("--update-card", is_flag=True, help="Write the figures into the model card.")
def evaluate(data_dir: Path, prefix: str, model_path: Path | None, limit: int | None,
             confusion: Path | None, update_card: bool) -> None:
    """Print top-1, top-5 and per-class recall on the test set, raw and as canvas drawings.

    \b
    Example:
      inkq eval --data-dir ../shared/emnist --confusion confusion.png
    """
    from worker.evaluate import main as run_eval

    s = Settings.from_env()
    path = model_path or s.model_path
    run_eval(path, data_dir, prefix=prefix, limit=limit, confusion_png=confusion,
             update_card=update_card, echo=click.echo)


def _redis_for_cli(settings: Settings):
    """Redis for admin commands: REDIS_URL, else the embedded one a running `inkq up` announced."""
    from .embedded_redis import announced_url
    from .jobstore import connect

    url = settings.redis_url or announced_url(settings.data_dir / "redis") or settings.broker_url
    return connect(url, timeout_s=5)


@cli.group()
def keys() -> None:
    """Manage API keys (stored in Redis as sha256 digests only).

    \b
    Example:
      inkq keys add ci-uploader      # prints the key once
      inkq keys list
      inkq keys revoke ci-uploader   # refused from the next request on
    """


@keys.command("add")
@click.argument("name")
def keys_add(name: str) -> None:
    """Create a key called NAME and print it (it is shown only this once).

    \b
    Example:
      inkq keys add alice
    """
    from .apikeys import KeyRing

    try:
        key = KeyRing(_redis_for_cli(Settings.from_env())).add(name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(key)
    click.echo(f"key {name!r} created; store it now, it cannot be shown again.", err=True)


@keys.command("list")
def keys_list() -> None:
    """List key names, creation dates and digest prefixes (never the keys).

    \b
    Example:
      inkq keys list
    """
    import datetime

    from .apikeys import KeyRing

    for info in KeyRing(_redis_for_cli(Settings.from_env())).list():
        created = datetime.datetime.fromtimestamp(info.created_at, datetime.timezone.utc)
        click.echo(f"{info.name}\t{created:%Y-%m-%d %H:%M}Z\tsha256:{info.digest[:12]}")


@keys.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the key called NAME; requests with it are refused at once.

    \b
    Example:
      inkq keys revoke alice
    """
    from .apikeys import KeyRing

    if not KeyRing(_redis_for_cli(Settings.from_env())).revoke(name):
        raise click.UsageError(f"no key named {name!r}")
    click.echo(f"key {name!r} revoked")


@cli.command()
def config() -> None:
    """Print every setting: environment variable, default, meaning (Markdown).

    \b
    Example:
      inkq config
    """
    click.echo("| variable | default | meaning |\n| --- | --- | --- |")
    for env, default, doc in table():
        click.echo(f"| `{env}` | `{default}` | {doc} |")


def _register_client_commands() -> None:
    try:
        from .cli_client import COMMANDS
    except ImportError:  # pragma: no cover
        return
    for command in COMMANDS:
        cli.add_command(command)


_register_client_commands()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
