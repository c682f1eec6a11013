"""The commands of ``mloop``: each declares its options and calls one function of
``flows.cli.data``, ``.model``, ``.loop``, ``.serving`` or ``.tools`` (those import the heavy
libraries inside, so ``--help`` stays fast). ``flows.cli.root`` holds the root and its groups.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import data, loop, model, serving, tools
from flows.cli.root import Host, Session, app, command, data_app, model_app


# --- mloop data ... ---------------------------------------------------------------------------
@command(data_app, "ingest", alias="ingest")
def ingest(
    s: Session,
    path: Annotated[
        Path | None,
        typer.Argument(
            help="a CSV/Parquet file, an image folder, or a .npz of arrays x and y (digits);"
            " none: every new item of data/incoming/"
        ),
    ] = None,
) -> int:
    """Gate a new batch of data; accepted, the next retrain trains on it."""
    return data.ingest(s, path)


@command(data_app, "harvest", alias="harvest")
def harvest(
    s: Session,
    source: Annotated[
        list[str] | None,
        typer.Option(
            metavar="LABELLER",
            help="take only this labeller's labels (a name in .mloop/labellers.json;"
            " repeat for more) (default: ingest.harvest_sources; empty: all)",
        ),
    ] = None,
) -> int:
    """Labelled production traffic (POST /feedback) becomes a batch, through the data gate."""
    return data.harvest(s, source)


@command(data_app, "batches", alias="batches")
def batches(
    s: Session,
    exclude: Annotated[
        str | None,
        typer.Option(metavar="BATCH", help="set this batch aside: no later run reads it"),
    ] = None,
    include: Annotated[
        str | None,
        typer.Option(metavar="BATCH", help="take a batch set aside back into the data"),
    ] = None,
    reason: Annotated[str, typer.Option(help="why it is set aside (kept with it)")] = "",
) -> int:
    """The accepted batches, and which the next retrain trains on (the window)."""
    return data.batches(s, exclude, include, reason)


@command(data_app, "validate", alias="validate")
def validate(
    s: Session,
    data_path: Annotated[
        Path, typer.Option("--data", help="a CSV/Parquet file or a folder of class folders")
    ],
    label: Annotated[
        str | None,
        typer.Option(
            help="the label column of a table (default: data.tabular.label; texts: label)"
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN", help="the file holds texts: COLUMN is the text, --label the label"
        ),
    ] = None,
) -> int:
    """Run the data gate on a file or folder; exit 1 if it fails."""
    return data.validate(s, data_path, label, text)


# --- mloop model ... --------------------------------------------------------------------------
@command(model_app, "ls", alias="models")
def model_ls(s: Session) -> int:
    """Registered versions, aliases, metrics and lineage; what is served."""
    return model.ls(s)


@command(model_app, "promote", alias="promote")
def promote(
    s: Session,
    version: Annotated[str, typer.Argument(help="the registered version number")],
    force: Annotated[bool, typer.Option(help="override the gate (recorded)")] = False,
) -> int:
    """Make a registered version champion, through the gate; its Bento is built."""
    return model.promote(s, version, force)


@command(model_app, "rollback", alias="rollback")
def rollback(s: Session) -> int:
    """Champion back to the previous champion; its Bento is built."""
    return model.rollback(s)


@command(model_app, "lineage", alias="lineage")
def lineage(
    s: Session,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="NAME@ALIAS or NAME/VERSION, e.g. digits-classifier@champion"
        ),
    ],
) -> int:
    """What a registered model was made from: data, params, code, run."""
    return model.lineage(s, ref)


# --- the loop ---------------------------------------------------------------------------------
@command(app, "run", starts_processes=True)
def run(
    s: Session,
    if_new_data: Annotated[
        bool,
        typer.Option(
            help="train only if a batch arrived since the champion was trained (as the"
            " scheduled run does); else end with 'no new data'"
        ),
    ] = False,
) -> int:
    """Run the whole loop as the Prefect flow 'retrain'."""
    return loop.run(s, if_new_data)


@command(app, "run-many", starts_processes=True)
def run_many(
    s: Session,
    workspaces: Annotated[
        list[Path], typer.Argument(help="folders, each with its own params.yaml")
    ],
    parallel: Annotated[int, typer.Option(min=1, help="retrains at a time (Dask workers)")] = 2,
) -> int:
    """The loop for several workspaces (data sets), in parallel on Dask."""
    return loop.run_many(s, workspaces, parallel)


@command(app, "train")
def train(
    s: Session,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint")] = False,
) -> int:
    """Train alone on the prepared data (after prepare and validate)."""
    return loop.train(s, resume)


@command(app, "sweep", starts_processes=True)
def sweep(
    s: Session,
    trials: Annotated[
        int | None, typer.Option(min=1, help="trials (default: sweep.trials)")
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(min=1, help="trials at a time (default: sweep.parallel)")
    ] = None,
) -> int:
    """Optuna search over params.yaml's sweep.space, as the Prefect flow 'sweep'."""
    return loop.sweep(s, trials, parallel)


@command(app, "monitor", starts_processes=True)
def monitor(s: Session) -> int:
    """Check the logged traffic for drift (the Prefect flow 'monitor'); drift retrains."""
    return loop.monitor(s)


@command(app, "deploy", starts_processes=True)
def deploy(
    s: Session,
    pool: Annotated[
        str | None,
        typer.Option(
            help="register them on this Prefect work pool (created if missing) for workers to run,"
            " and exit (default: MLOOP_WORK_POOL; none: serve here)"
        ),
    ] = None,
    prefect_port: Annotated[
        int, typer.Option(help="its Prefect server's port (when no PREFECT_API_URL is set)")
    ] = 4200,
) -> int:
    """Schedule retrain (cron) and monitor (interval): served here or on a work pool."""
    return loop.deploy(s, pool, prefect_port)


# --- serving ----------------------------------------------------------------------------------
SERVE_PORT = 3000  # BentoML's own; infra/docker-compose.yml publishes the same


class Drift(StrEnum):
    none = "none"
    noise = "noise"
    shift = "shift"
    invert = "invert"


@command(app, "serve", starts_processes=True)
def serve(
    s: Session,
    bento: Annotated[
        str | None, typer.Option(help="serve this Bento tag as it is (no following)")
    ] = None,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = SERVE_PORT,
    insecure: Annotated[
        bool, typer.Option(help="allow a non-loopback --host without MLOOP_API_TOKEN")
    ] = False,
) -> int:
    """Serve the champion's Bento; a new champion is switched to without dropping a request."""
    return serving.serve(s, bento, host, port, insecure)


@command(app, "traffic")
def traffic(
    s: Session,
    drift: Annotated[
        Drift,
        typer.Option(
            help="change the test images: noise, a shift, or invert them (a change of domain)"
        ),
    ] = Drift.none,
    rate: Annotated[float, typer.Option(help="requests per second")] = 50.0,
    duration: Annotated[float, typer.Option(help="seconds")] = 10.0,
    feedback: Annotated[
        float, typer.Option(help="share of answers whose true label is posted back (0..1)")
    ] = 0.0,
    retries: Annotated[
        int,
        typer.Option(
            help="send a request refused with 503 and Retry-After again, up to this many times"
            " (0: a load test counts every refusal)"
        ),
    ] = 0,
    port: Annotated[int, typer.Option(help="the service's port on loopback")] = SERVE_PORT,
    url: Annotated[
        str | None, typer.Option(help="the service's base URL (default: loopback, --port)")
    ] = None,
    files: Annotated[
        Path | None,
        typer.Option(
            metavar="FOLDER",
            help="upload PNG/JPEG files of FOLDER (class sub-folders label them)"
            " to /predict_files instead of sending test-split pixels",
        ),
    ] = None,
) -> int:
    """Send test images or texts to the service at a fixed rate."""
    return serving.traffic(s, drift.value, rate, duration, feedback, retries, port, url, files)


# --- tools ------------------------------------------------------------------------------------
@command(app, "ui", starts_processes=True)
def ui(
    s: Session,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 5000,
) -> int:
    """Open MLflow's UI over the workspace's runs and models."""
    return tools.ui(s, host, port)


@command(app, "tensorboard", starts_processes=True)
def tensorboard(
    s: Session,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 6006,
) -> int:
    """Open TensorBoard over the workspace's training logs."""
    return tools.tensorboard(s, host, port)


@command(app, "env")
def env(s: Session) -> int:
    """Print exports that point MLflow, BentoML and Prefect tools at the workspace."""
    return tools.env(s)


def main(argv: list[str] | None = None) -> int:
    """``mloop``: the exit status of the command (2 for a usage error)."""
    try:
        code = app(args=argv, prog_name="mloop", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        print("mloop: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as err:  # a usage error: named, with the command's usage
        err.show()
        return err.exit_code
    return code if isinstance(code, int) else 0
