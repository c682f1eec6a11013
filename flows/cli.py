"""The ``mloop`` command. Light at import: heavy libraries load inside commands.

mloop run            the whole loop as the Prefect flow ``retrain``
mloop ingest PATH    a new batch of data, through the data gate (no PATH: data/incoming/)
mloop harvest        labelled production traffic becomes a batch, through the same gate
mloop batches        the accepted batches, and which a retrain trains on
mloop run-many       the loop for several workspaces (data sets), in parallel on Dask
mloop models         registered versions; mloop promote VERSION, mloop rollback
mloop ui             MLflow's UI over the workspace's tracking store
mloop tensorboard    TensorBoard over the workspace's training logs (beside MLflow)
mloop serve          serve the latest Bento on loopback (follows new champions)
mloop traffic        send test traffic to the service (clean, noisy or shifted)
mloop monitor        check the logged traffic for drift (the Prefect flow ``monitor``)
mloop deploy         schedule retrain (cron) and monitor (interval); --pool for workers
mloop env            shell exports that point MLflow/BentoML/Prefect tools at the workspace
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from components.core.config import ParamsError, load_params, parse_params
from components.core.paths import Workspace, configure_environment
from components.core.settings import settings
from flows import prefect_server


def _workspace(args: argparse.Namespace) -> Workspace:
    ws = Workspace(Path(args.workspace).resolve()) if args.workspace else Workspace.current()
    configure_environment(ws)
    return ws


def cmd_run(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.core.logs import setup_logging
    from components.core.workspace_lock import WorkspaceBusy, workspace_lock

    setup_logging(settings().verbose)
    params_file = Path(args.params).resolve() if args.params else ws.params
    params = _params_or_exit(params_file)  # fail on a bad key now, not after the server started
    missing = _missing_source(params, ws)
    if missing:
        print(f"mloop run: {missing}", file=sys.stderr)
        return 1
    try:
        with workspace_lock(ws, "mloop run"):  # the flow takes it again, in this process
            print(f"mloop: running the retrain flow in {ws.root}", flush=True)
            print("  (Prefect's local server starts first; its first start takes up to a minute)")
            from flows.retrain import retrain

            if not settings().verbose:
                from components.core.logs import hide_run_failures_on_console

                hide_run_failures_on_console()
            start = time.perf_counter()
            trigger = "schedule" if args.if_new_data else "manual"
            try:
                summary = retrain(params_file=str(params_file), workspace=str(ws.root),
                                  trigger=trigger)  # fmt: skip
            except Exception as err:  # a failed stage: the flow run FAILED, nothing promoted
                return _flow_failed(err)
    except WorkspaceBusy as err:
        print(f"mloop run: {err}", file=sys.stderr)
        return 1
    from flows.retrain import NoNewData

    if isinstance(summary, NoNewData):
        print(f"mloop: {summary.summary()}")
        return 0
    print_summary(summary, ws, time.perf_counter() - start)
    return 0


def _flow_failed(err: Exception) -> int:
    """A failed flow in one line (and where its report is); the traceback with --verbose."""
    from components.validate.report import DataValidationError

    line = (f"data validation failed: {err.result.in_brief(3)}"
            if isinstance(err, DataValidationError) else str(err))  # fmt: skip
    print(f"mloop: the retrain flow failed: {_one_line(line, 800)}", file=sys.stderr)
    if isinstance(err, DataValidationError):
        print(f"  report: {err.result.html_report}", file=sys.stderr)
    if settings().verbose:
        import traceback

        traceback.print_exception(err)
    else:
        print("  (--verbose shows the traceback and the libraries' logs)", file=sys.stderr)
    return 1


def _missing_source(params, ws: Workspace) -> str | None:
    """Why the configured data cannot be read at all (no such file or folder), if so."""
    source = params.data.source
    if source not in ("tabular", "images"):
        return None
    path = ws.root / getattr(params.data, source).path
    kind = "file" if source == "tabular" else "folder"
    if not path.exists():
        return f"data.{source}.path: no such {kind}: {path}"
    if (source == "tabular") != path.is_file():
        return f"data.{source}.path: not a {kind}: {path}"
    return None


def cmd_ingest(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    params = _params_or_exit(ws.params)
    from components.ingest.ingest import IngestError, ingest, ingest_incoming

    try:
        if args.path is None:  # the drop folder, as the scheduled flow ingests it
            found = ingest_incoming(params, ws)
            for result in found.results:
                print(f"mloop ingest: {result.summary()}",
                      file=sys.stdout if result.accepted else sys.stderr)  # fmt: skip
            print(f"mloop ingest: {found.summary()} ({ws.incoming})")
            return 0 if all(r.accepted for r in found.results) else 1
        result = ingest(Path(args.path), params, ws)
    except IngestError as err:
        print(f"mloop ingest: {err}", file=sys.stderr)
        return 1
    if not result.accepted:
        print(f"mloop ingest: {result.summary()}", file=sys.stderr)
        if result.report:
            print(f"  report: {result.report}", file=sys.stderr)
        return 1
    print(f"mloop ingest: {result.summary()}")
    print(f"  report: {result.report}; the next retrain trains on it (data.batches.window:"
          f" {params.data.batches.window})")  # fmt: skip
    return 0


def cmd_harvest(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    params = _params_or_exit(ws.params)
    from components.ingest.harvest import harvest

    if args.source:  # only these labellers' labels, this once
        chosen = params.ingest.model_copy(update={"harvest_sources": args.source})
        params = params.model_copy(update={"ingest": chosen})
    result = harvest(params, ws)
    print(f"mloop {result.summary()}", file=sys.stdout if result.batch else sys.stderr)
    return 0 if result.batch else 1


def cmd_batches(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    params = _params_or_exit(ws.params)
    from components.prepare.batches import BatchError, in_window, list_batches

    try:
        batches = list_batches(ws.batches)
    except BatchError as err:
        print(f"mloop batches: {err}", file=sys.stderr)
        return 1
    if not batches:
        print(f"no accepted batches in {ws.batches}: mloop ingest PATH or mloop harvest adds one")
        return 0
    window = {b.id for b in in_window(batches, params.data.batches)}
    print(f"{'batch':<11} {'arrived (UTC)':<21} {'rows':>9}  {'source':<8} {'sha256':<12}  window")
    for b in batches:
        print(f"{b.id:<11} {b.arrived_iso:<21} {b.rows:>9,}  {b.source:<8} {b.sha256[:12]:<12}"
              f"  {'yes' if b.id in window else 'no'}")  # fmt: skip
    return 0


def cmd_run_many(args: argparse.Namespace) -> int:
    _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    folders = [Path(w).resolve() for w in args.workspaces]
    for folder in folders:  # fail now on a missing or bad params.yaml, not minutes later
        _params_or_exit(Workspace(folder).params)
    where = settings().dask_address or f"a local Dask cluster of {args.parallel}"
    print(f"mloop: retraining {len(folders)} workspaces, {args.parallel} at a time on {where};"
          " each logs to its .mloop/retrain.log", flush=True)  # fmt: skip
    from flows.retrain import retrain_many_flow

    start = time.perf_counter()
    status = _flow_outcome(
        "retrain-many",
        lambda: retrain_many_flow(args.parallel)(
            workspaces=[str(f) for f in folders], parallel=args.parallel
        ),
    )
    print(f"mloop: {time.perf_counter() - start:.0f}s")
    return status


def print_summary(summary, ws: Workspace, seconds: float) -> None:
    from components.core import tracking

    reg, ev = summary.registration, summary.evaluation
    print(f"\nmloop: the loop finished in {seconds:.0f}s")
    gate = reg.decision
    champion = gate.challenger_score if gate.promote else gate.champion_score
    print(f"  champion {gate.metric:<14} {champion:.4f}  (version {_champion_version(reg)})")
    print(f"  this run's network      test accuracy {ev.scores.accuracy:.4f}")
    if ev.baseline is not None:
        trees = ev.baseline
        print(f"  this run's {trees.kind:<12} test accuracy {trees.scores.accuracy:.4f}")
    print(f"  MLflow run              {summary.train.run_id}")
    print(f"  registered model        {reg.model_name} version {reg.version}")
    print(f"    aliases               {', '.join(reg.aliases)} ({reg.decision.reason})")
    print(f"  compression             {summary.compression.summary()}")
    print(f"  Bento                   {summary.bento.bento_tag}")
    print(f"  drift self-test         {summary.drift.summary()}")
    print(f"  metrics                 {ws.metrics}")
    print(f"  reports                 {ws.reports}")
    print("\nlook closer:")
    print(f"  {tracking.ui_hint(ws)}")
    print(f"  BENTOML_HOME={os.environ['BENTOML_HOME']} bentoml list")
    print(serve_hint(ws))


def serve_hint(ws: Workspace) -> str:
    """The closing hint: the route that takes this workspace's kind of data."""
    from components.package.routes import ENDPOINTS
    from components.prepare.splits import load_meta

    route = ENDPOINTS.get(load_meta(ws.prepared)["kind"], "/predict")
    return f"  mloop serve   (then POST to http://127.0.0.1:3000{route})"


def _champion_version(reg) -> str:
    """This run's challenger if the gate promoted it, else the champion it faced."""
    return reg.version if reg.decision.promote else str(reg.decision.champion_version)


def _run_alone(args: argparse.Namespace, name: str, target: str, **options) -> int:
    """Run one stage function (``module:function``) outside the flow, as its entry point does."""
    from importlib import import_module

    from pipelines._entry import run_stage

    ws = _workspace(args)
    module, function = target.split(":")
    stage = getattr(import_module(module), function)
    run_stage(name, lambda params, workspace: stage(params, workspace, **options), ws)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """The train stage alone (data prepared): ``--resume`` continues from the last checkpoint."""
    return _run_alone(args, "train", "components.train.stage:train_stage", resume=args.resume)


def cmd_sweep(args: argparse.Namespace) -> int:
    """The Prefect flow ``sweep``: ``--parallel N`` trials at a time, each a task."""
    ws = _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    params = _params_or_exit(ws.params)
    parallel = args.parallel or params.sweep.parallel
    trials = args.trials or params.sweep.trials
    print(f"mloop: sweep of {trials} trials, {parallel} at a time, in {ws.root}", flush=True)
    from flows.sweep import sweep_flow

    return _flow_outcome(
        "sweep",  # a failed trial: the parent run ended FAILED
        lambda: sweep_flow(parallel)(
            params_file=str(ws.params), workspace=str(ws.root), trials=trials, parallel=parallel
        ),
    )


def _flow_outcome(name: str, run) -> int:
    """Run a flow; print its summary (exit 0) or why it failed (exit 1)."""
    try:
        result = run()
    except Exception as err:
        print(f"mloop: the {name} flow failed: {err}", file=sys.stderr)
        return 1
    print(f"mloop {name}: {result.summary()}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    try:
        if args.params or ws.params.is_file():
            params = load_params(Path(args.params).resolve() if args.params else ws.params)
        else:  # validating a file needs no project: the default rules apply
            params = parse_params({})
    except ParamsError as err:
        print(f"mloop: {err}", file=sys.stderr)
        return 2
    from components.prepare.sources import DataError
    from components.validate.report import DataValidationError
    from components.validate.stage import validate_path

    try:
        result = validate_path(Path(args.data), params, ws, label=args.label, text=args.text)
    except DataError as err:
        print(f"mloop validate: REJECTED {err}", file=sys.stderr)
        if err.quarantine:
            print(
                f"  quarantined (reason, and the file if it is one): {err.quarantine}",
                file=sys.stderr,
            )
        return 1
    if not result.passed:
        print(f"mloop validate: {DataValidationError(result)}", file=sys.stderr)
        return 1
    print(f"mloop validate: PASSED, {result.summary()} in {result.seconds:.1f}s")
    print(f"  report: {result.html_report}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    _workspace(args)
    from components.register.commands import lineage

    try:
        info = lineage(args.model)
    except (ValueError, LookupError) as err:
        print(f"mloop lineage: {err}", file=sys.stderr)
        return 1
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in sorted(value.items()):
                print(f"  {k} = {v}")
        else:
            print(f"{key:<{width}}  {value}")
    return 0


def _params_or_exit(path: Path):
    """The validated params, or exit 2 with every wrong key named."""
    try:
        return load_params(path)
    except ParamsError as err:
        print(f"mloop: {err}", file=sys.stderr)
        sys.exit(2)


def cmd_promote(args: argparse.Namespace) -> int:
    """The gate for one version against the champion; ``--force`` overrides and is recorded."""
    ws = _workspace(args)
    params = _params_or_exit(ws.params)
    from components.register.commands import promote

    try:
        decision = promote(params, ws, args.version, force=args.force)
    except (LookupError, ValueError) as err:
        print(f"mloop promote: {err}", file=sys.stderr)
        return 1
    name = params.registry.model_name
    if not decision.promote:
        print(
            f"mloop promote: {name} version {args.version} REFUSED: {decision.reason}"
            "\n  (--force overrides the gate; the override is recorded)",
            file=sys.stderr,
        )
        return 1
    print(f"mloop promote: {name} version {args.version} is champion ({decision.reason})")
    return _package_champion(params, ws, "promote")


def _package_champion(params, ws: Workspace, command: str) -> int:
    """After the champion moved: a Bento of what is now served (``mloop serve`` follows)."""
    from components.package.stage import package_stage

    try:
        bento = package_stage(params, ws)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"mloop {command}: the champion moved, but no Bento was built for it: {err}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"  packaged: {bento.summary()}; a running `mloop serve` switches to it")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    params = _params_or_exit(ws.params)
    from components.register.commands import rollback

    try:
        old, new = rollback(params, ws)
    except RuntimeError as err:
        print(f"mloop rollback: {err}", file=sys.stderr)
        return 1
    print(f"mloop rollback: champion {params.registry.model_name} version {old} -> {new}")
    return _package_champion(params, ws, "rollback")


def cmd_models(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    params = _params_or_exit(ws.params)
    from components.register.commands import models_table

    rows = models_table(params.registry.model_name)
    if not rows:
        print(f"no versions of {params.registry.model_name} yet: mloop run registers one")
        return 0
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
    print("  ".join(f"{k:<{w}}" for k, w in widths.items()))
    for row in rows:
        print("  ".join(f"{row[k]:<{w}}" for k, w in widths.items()))
    from components.core.records import read_json

    try:
        bento = read_json(ws.report("bento.json"), "package")
        print(f"served: version {bento['model_version']} ({bento['alias']}), Bento"
              f" {bento['bento_tag']} (what `mloop serve` answers with)")  # fmt: skip
    except (FileNotFoundError, ValueError):
        print("served: nothing packaged yet")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    _workspace(args)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    command = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"mloop: MLflow UI on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    return subprocess.call(command)


def cmd_tensorboard(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    logs = ws.tensorboard
    if not logs.is_dir():
        print(f"mloop tensorboard: no training logs in {logs} yet: train first (mloop run)",
              file=sys.stderr)  # fmt: skip
        return 1
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logs), "--host",
               args.host, "--port", str(args.port)]  # fmt: skip
    print(f"mloop: TensorBoard over {logs} on http://{args.host}:{args.port} (Ctrl-C stops it)",
          flush=True)  # fmt: skip
    return subprocess.call(command)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_serve(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.serve import supervisor

    if settings().api_token:
        print("mloop: MLOOP_API_TOKEN is set: requests need 'Authorization: Bearer <token>'")
    elif args.host not in LOOPBACK:
        if not args.insecure:
            print(f"mloop serve: refusing to serve on {args.host} without MLOOP_API_TOKEN:"
                  " anyone who reaches it could send predictions and labels. Set the token,"
                  " or pass --insecure", file=sys.stderr)  # fmt: skip
            return 2
        print(f"mloop: WARNING: serving on {args.host} with no MLOOP_API_TOKEN (--insecure)",
              file=sys.stderr)  # fmt: skip
    log_file = ws.serve_log
    print(f"mloop: inference log {settings().inference_log}; server log {log_file}")
    from components.core.credentials import CredentialError, ensure_labeller_file

    labellers = settings().labeller_tokens
    try:
        if labellers is not None:
            made = ensure_labeller_file(labellers)
            print(f"mloop: POST /feedback wants a labeller token: {'written to' if made else 'in'}"
                  f" {labellers} (mode 0600), sent as 'Authorization: Bearer <token>'")  # fmt: skip
    except (CredentialError, OSError) as err:
        print(f"mloop serve: {err}", file=sys.stderr)
        return 1
    server = None
    try:
        with supervisor.stop_signals_raise():
            if args.bento:  # a fixed Bento: serve it as it is
                server = supervisor.start(args.bento, args.host, args.port, log_file)
                supervisor.wait_ready(args.host, args.port, server, log_file=log_file)
                print(f"mloop: serving {args.bento} on http://{args.host}:{args.port}", flush=True)
                print("mloop: ready", flush=True)
                code = server.wait()
                print(f"mloop: the server exited with {code}", file=sys.stderr)
                return code or 1
            following = supervisor.Supervisor(
                ws.report("bento.json"), args.host, args.port, log_file,
                say=lambda line: print(f"mloop: {line}", flush=True), pointer=ws.model_pointer,
            )  # fmt: skip
            return following.run()
    except (FileNotFoundError, RuntimeError, TimeoutError) as err:
        print(f"mloop serve: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mloop: stopped", flush=True)
        return 0
    finally:
        if server is not None:
            prefect_server.stop(server)


def cmd_traffic(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.serve import traffic

    params = _params_or_exit(ws.params)
    try:
        if args.files:  # image files as they are: uploads, no drift applied
            images, labels = traffic.folder_files(Path(args.files), seed=params.seed)
            args.drift = f"files from {args.files}"
        else:
            images, labels = traffic.test_images(params, ws, args.drift)
    except (FileNotFoundError, ValueError) as err:
        print(f"mloop traffic: {err}", file=sys.stderr)
        return 1
    url = args.url or f"http://127.0.0.1:{args.port}"
    print(f"mloop: {args.rate:g} requests/s for {args.duration:g} s to {url} ({args.drift})",
          flush=True)  # fmt: skip
    from components.core.credentials import first_token

    labeller = first_token(settings().labeller_tokens, settings().labeller_token)
    if args.feedback and labeller is None:
        print("mloop traffic: --feedback needs a labeller token: none in"
              f" {settings().labeller_tokens} (mloop serve writes it) nor MLOOP_LABELLER_TOKEN",
              file=sys.stderr)  # fmt: skip
        return 1
    result = traffic.run(
        url, images, labels, args.rate, args.duration, args.drift, args.feedback,
        settings().api_token, params.seed, retries=max(args.retries, 0),
        labeller_token=labeller,
    )  # fmt: skip
    print(f"mloop: {result.summary()}")
    from components.core.records import write_json

    write_json(ws.report("traffic.json"), {**result.__dict__, "throughput": result.throughput})
    return 0 if result.ok and not result.errors else 1


def cmd_monitor(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    _params_or_exit(ws.params)
    from flows.monitor import monitor

    return _flow_outcome(
        "monitor", lambda: monitor(params_file=str(ws.params), workspace=str(ws.root))
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    from components.core.logs import setup_logging

    setup_logging(settings().verbose)
    params = _params_or_exit(ws.params)
    pool = args.pool or settings().work_pool
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        if pool:
            print("mloop: --pool needs a Prefect server that the workers see: set"
                  " PREFECT_API_URL (e.g. http://prefect:4200/api)", file=sys.stderr)  # fmt: skip
            return 2
        log_file = ws.prefect_server_log
        print(f"mloop: starting a Prefect server on 127.0.0.1:{args.prefect_port} (log"
              f" {log_file})", flush=True)  # fmt: skip
        try:
            server = prefect_server.start(args.prefect_port, log_file)
        except (RuntimeError, TimeoutError) as err:
            print(f"mloop: {err}", file=sys.stderr)
            return 1
    from flows import deploy

    url = os.environ["PREFECT_API_URL"]
    what = ", ".join(
        f"{s.full_name} ({f'cron {s.cron!r}' if s.cron else f'every {s.interval}'})"
        for s in deploy.schedules(params)
    )
    if pool:
        try:
            if deploy.ensure_pool(pool):
                print(f"mloop: created the {deploy.POOL_TYPE} work pool {pool!r}")
            names = deploy.to_pool(params, ws.params, ws, pool)
        except Exception as err:  # the server's answer, shown as it is
            print(f"mloop: deploying to {url} failed: {type(err).__name__}: {err}",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(f"mloop: deployed {', '.join(names)} to work pool {pool!r} on {url}: {what}."
              f" Start a worker: prefect worker start --pool {pool}."
              f" Run one now: prefect deployment run {names[0]}")  # fmt: skip
        return 0
    print(f"mloop: serving deployments to {url}: {what}. `prefect deployment ls` with"
          f" PREFECT_API_URL={url} lists them; Ctrl-C stops", flush=True)  # fmt: skip
    try:
        stopped = deploy.serve(deploy.served(params, ws.params, ws))
    except Exception as err:  # the runner gave up: the server's answer, shown as it is
        print(f"mloop: serving to {url} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            prefect_server.stop(server)
    if not stopped:  # its thread would hold up the interpreter's exit; the server is down
        print("mloop: the runner did not stop in time; exiting without it", file=sys.stderr,
              flush=True)  # fmt: skip
        os._exit(1)
    print("mloop: stopped", flush=True)
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    _workspace(args)
    for key in ("MLFLOW_TRACKING_URI", "BENTOML_HOME", "PREFECT_HOME", "MLOOP_INFERENCE_LOG",
                "PREFECT_SERVER_ANALYTICS_ENABLED"):  # fmt: skip
        print(f"export {key}={os.environ[key]}")
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mloop",
        description="Validate, train, track, register, compress, serve and monitor: one loop.",
    )
    parser.add_argument(
        "--workspace", help="folder holding params.yaml and the loop's files (default: .)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show tracebacks and the libraries' full logs"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the whole loop as the Prefect flow 'retrain'")
    run.add_argument("--params", help="parameters file (default: WORKSPACE/params.yaml)")
    run.add_argument("--if-new-data", action="store_true",
                     help="train only if a batch arrived since the champion was trained"
                          " (as the scheduled run does); else end with 'no new data'")  # fmt: skip
    run.set_defaults(func=cmd_run)

    ing = sub.add_parser("ingest", help="gate a new batch of data; accepted, the next retrain"
                                        " trains on it")  # fmt: skip
    ing.add_argument("path", nargs="?",
                     help="a CSV/Parquet file, an image folder, or a .npz of arrays x and y"
                          " (digits); none: every new item of data/incoming/")  # fmt: skip
    ing.set_defaults(func=cmd_ingest)

    har = sub.add_parser("harvest", help="labelled production traffic (POST /feedback) becomes"
                                         " a batch, through the data gate")  # fmt: skip
    har.add_argument(
        "--source",
        action="append",
        metavar="LABELLER",
        help="take only this labeller's labels (a name in .mloop/labellers.json;"
        " repeat for more; default: ingest.harvest_sources; empty: all)",
    )
    har.set_defaults(func=cmd_harvest)

    bat = sub.add_parser("batches", help="the accepted batches and the training window")
    bat.set_defaults(func=cmd_batches)

    many = sub.add_parser(
        "run-many", help="the loop for several workspaces (data sets) in parallel on Dask"
    )
    many.add_argument("workspaces", nargs="+", help="folders, each with its own params.yaml")
    many.add_argument("--parallel", type=_positive, default=2,
                      help="retrains at a time (Dask workers; default 2)")  # fmt: skip
    many.set_defaults(func=cmd_run_many)

    tr = sub.add_parser("train", help="train alone on the prepared data (after prepare/validate)")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    tr.set_defaults(func=cmd_train)

    sw = sub.add_parser("sweep", help="Optuna search over params.yaml's sweep.space")
    sw.add_argument("--trials", type=_positive, help="number of trials (default: sweep.trials)")
    sw.add_argument("--parallel", type=_positive, help="trials at a time (default: sweep.parallel)")
    sw.set_defaults(func=cmd_sweep)

    val = sub.add_parser(
        "validate", help="run the data gate on a file or folder; exit 1 if it fails"
    )
    val.add_argument(
        "--data", required=True, help="a CSV/Parquet file or a folder of class folders"
    )
    val.add_argument("--label", help="the label column of a table (default: data.tabular.label;"
                                     " texts: label)")  # fmt: skip
    val.add_argument("--text", metavar="COLUMN",
                     help="the file holds texts: COLUMN is the text,"
                          " --label the label")  # fmt: skip
    val.add_argument("--params", help="parameters file (default: WORKSPACE/params.yaml)")
    val.set_defaults(func=cmd_validate)

    lin = sub.add_parser("lineage", help="print what a registered model was made from")
    lin.add_argument("model", help="NAME@ALIAS or NAME/VERSION, e.g. digits-classifier@champion")
    lin.set_defaults(func=cmd_lineage)

    pro = sub.add_parser("promote", help="make a registered version champion, through the gate")
    pro.add_argument("version", help="the registered version number")
    pro.add_argument("--force", action="store_true", help="override the gate (recorded)")
    pro.set_defaults(func=cmd_promote)

    rb = sub.add_parser("rollback", help="champion back to the previous champion")
    rb.set_defaults(func=cmd_rollback)

    mo = sub.add_parser("models", help="registered versions, aliases, metrics and lineage")
    mo.set_defaults(func=cmd_models)

    ui = sub.add_parser("ui", help="open MLflow's UI over the workspace's runs and models")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)

    tb = sub.add_parser("tensorboard", help="open TensorBoard over the workspace's training logs")
    tb.add_argument("--host", default="127.0.0.1")
    tb.add_argument("--port", type=int, default=6006)
    tb.set_defaults(func=cmd_tensorboard)

    serve = sub.add_parser(
        "serve", help="serve the packaged Bento on loopback; restart on a new champion's Bento"
    )
    serve.add_argument("--bento", help="serve this Bento tag as it is (no following)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --host without MLOOP_API_TOKEN")  # fmt: skip
    serve.set_defaults(func=cmd_serve)

    tf = sub.add_parser("traffic", help="send test images or texts to the service at a fixed rate")
    tf.add_argument("--drift", choices=("none", "noise", "shift", "invert"), default="none",
                    help="change the test images: noise, a shift, or invert them (a change of"
                         " domain)")  # fmt: skip
    tf.add_argument("--rate", type=float, default=50.0, help="requests per second")
    tf.add_argument("--duration", type=float, default=10.0, help="seconds")
    tf.add_argument("--feedback", type=float, default=0.0,
                    help="share of answers whose true label is posted back (0..1)")  # fmt: skip
    tf.add_argument("--retries", type=int, default=0,
                    help="send a request refused with 503 and Retry-After again, up to this"
                         " many times (default 0: a load test counts every refusal)")  # fmt: skip
    tf.add_argument("--port", type=int, default=3000)
    tf.add_argument("--url", help="the service's base URL (default: loopback, --port)")
    tf.add_argument("--files", metavar="FOLDER",
                    help="upload PNG/JPEG files of FOLDER (class sub-folders label them)"
                         " to /predict_files instead of sending test-split pixels")  # fmt: skip
    tf.set_defaults(func=cmd_traffic)

    mon = sub.add_parser("monitor", help="check the logged traffic for drift; drift retrains")
    mon.set_defaults(func=cmd_monitor)

    dep = sub.add_parser(
        "deploy", help="schedule retrain (cron) and monitor (interval): served here or on a pool"
    )
    dep.add_argument(
        "--pool",
        help="register them on this Prefect work pool (created if missing)"
        " for workers to run, and exit (default: MLOOP_WORK_POOL; none: serve here)",
    )
    dep.add_argument(
        "--prefect-port", type=int, default=4200, help="its Prefect server's port (no API URL set)"
    )
    dep.set_defaults(func=cmd_deploy)

    env = sub.add_parser("env", help="print exports that point the tools at the workspace")
    env.set_defaults(func=cmd_env)
    return parser


# Commands that start servers or workers: their processes stop when mloop does.
STARTS_PROCESSES = frozenset(
    {"run", "run-many", "sweep", "monitor", "deploy", "ui", "tensorboard", "serve"}
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:  # every command's logging set-up reads it (settings().verbose)
        os.environ["MLOOP_VERBOSE"] = "1"
    if args.command in STARTS_PROCESSES:
        from components.core import process_family

        process_family.guard()  # a watchdog ends them even if this process is SIGKILLed
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"mloop {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # an error no command expected: one line, unless --verbose
        if args.verbose:
            raise
        print(f"mloop {args.command}: {type(err).__name__}: {_one_line(err)}"
              " (--verbose shows the traceback)", file=sys.stderr)  # fmt: skip
        return 1


def _one_line(err: BaseException, limit: int = 500) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
