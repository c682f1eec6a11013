"""``mloop run|run-many|train|sweep|monitor|deploy``: the loop's flows, run here or scheduled."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from components.core.paths import Workspace
from components.core.settings import settings
from flows import prefect_server
from flows.cli.session import Session, one_line


def run(s: Session, if_new_data: bool) -> int:
    ws = s.logged().ws
    from components.core.workspace_lock import WorkspaceBusy, workspace_lock

    params = s.params()  # fail on a bad key now, not after the server started
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
            trigger = "schedule" if if_new_data else "manual"
            try:
                summary = retrain(params_file=str(s.params_path), workspace=str(ws.root),
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
    print(f"mloop: the retrain flow failed: {one_line(line, 800)}", file=sys.stderr)
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
    from components.core.kinds.sources import source_of

    where = source_of(params.data).path(params.data)
    if where is None:  # built in, or generated
        return None
    path, is_file = ws.root / where[0], where[1]
    kind = "file" if is_file else "folder"
    if not path.exists():
        return f"data.{params.data.source}.path: no such {kind}: {path}"
    if is_file != path.is_file():
        return f"data.{params.data.source}.path: not a {kind}: {path}"
    return None


def print_summary(summary, ws: Workspace, seconds: float) -> None:
    from components.core import tracking
    from components.evaluate.stage import line

    reg, ev = summary.registration, summary.evaluation
    print(f"\nmloop: the loop finished in {seconds:.0f}s")
    gate = reg.decision
    champion = gate.challenger_score if gate.promote else gate.champion_score
    print(f"  champion {gate.metric:<14} {champion:.4f}  (version {_champion_version(reg)})")
    print(f"  this run's network      {line(ev.scores)}")
    for baseline in ev.baselines:
        print(f"  this run's {baseline.kind:<12} {line(baseline.scores)}")
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
    from components.core.splits import load_meta
    from components.package.routes import ENDPOINTS

    route = ENDPOINTS.get(load_meta(ws.prepared)["kind"], "/predict")
    return f"  mloop serve   (then POST to http://127.0.0.1:3000{route})"


def _champion_version(reg) -> str:
    """This run's challenger if the gate promoted it, else the champion it faced."""
    return reg.version if reg.decision.promote else str(reg.decision.champion_version)


def run_many(s: Session, workspaces: list[Path], parallel: int) -> int:
    s.logged().ws  # noqa: B018 -- the environment of the workspace mloop was started in
    folders = [Path(w).resolve() for w in workspaces]
    for folder in folders:  # fail now on a missing or bad params.yaml, not minutes later
        Session(str(folder)).params()
    where = settings().dask_address or f"a local Dask cluster of {parallel}"
    print(f"mloop: retraining {len(folders)} workspaces, {parallel} at a time on {where};"
          " each logs to its .mloop/retrain.log", flush=True)  # fmt: skip
    from flows.retrain import retrain_many_flow

    start = time.perf_counter()
    status = _flow_outcome("retrain-many", lambda: retrain_many_flow(parallel)(
        workspaces=[str(f) for f in folders], parallel=parallel))  # fmt: skip
    print(f"mloop: {time.perf_counter() - start:.0f}s")
    return status


def train(s: Session, resume: bool) -> int:
    """The train stage alone (data prepared): ``resume`` continues from the last checkpoint."""
    from components.train.stage import train_stage
    from pipelines._entry import run_stage

    run_stage("train", lambda params, ws: train_stage(params, ws, resume=resume), s.ws)
    return 0


def sweep(s: Session, trials: int | None, parallel: int | None) -> int:
    """The Prefect flow ``sweep``: ``parallel`` trials at a time, each a task."""
    params, ws = s.logged().params(), s.ws
    parallel = parallel or params.sweep.parallel
    trials = trials or params.sweep.trials
    print(f"mloop: sweep of {trials} trials, {parallel} at a time, in {ws.root}", flush=True)
    from flows.sweep import sweep_flow

    flow = sweep_flow(parallel)
    return _flow_outcome("sweep", lambda: flow(  # a failed trial: the parent run ended FAILED
        params_file=str(s.params_path), workspace=str(ws.root), trials=trials, parallel=parallel,
    ))  # fmt: skip


def monitor(s: Session) -> int:
    s.logged().params()
    from flows.monitor import monitor

    return _flow_outcome("monitor", lambda: monitor(params_file=str(s.params_path),
                                                    workspace=str(s.ws.root)))  # fmt: skip


def _flow_outcome(name: str, run) -> int:
    """Run a flow; print its summary (exit 0) or why it failed (exit 1)."""
    try:
        result = run()
    except Exception as err:
        print(f"mloop: the {name} flow failed: {err}", file=sys.stderr)
        return 1
    print(f"mloop {name}: {result.summary()}")
    return 0


def deploy(s: Session, pool: str | None, prefect_port: int) -> int:
    params, ws = s.logged().params(), s.ws
    pool = pool or settings().work_pool
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        if pool:
            print("mloop: --pool needs a Prefect server that the workers see: set"
                  " PREFECT_API_URL (e.g. http://prefect:4200/api)", file=sys.stderr)  # fmt: skip
            return 2
        log_file = ws.prefect_server_log
        print(f"mloop: starting a Prefect server on 127.0.0.1:{prefect_port} (log"
              f" {log_file})", flush=True)  # fmt: skip
        try:
            server = prefect_server.start(prefect_port, log_file)
        except (RuntimeError, TimeoutError) as err:
            print(f"mloop: {err}", file=sys.stderr)
            return 1
    try:
        code = _deploy(params, s.params_path, ws, pool)
    finally:
        if server is not None:
            prefect_server.stop(server)
    if code is None:  # its thread would hold up the interpreter's exit; the server is down
        print("mloop: the runner did not stop in time; exiting without it", file=sys.stderr,
              flush=True)  # fmt: skip
        os._exit(1)
    return code


def _deploy(params, params_file: Path, ws: Workspace, pool: str | None) -> int | None:
    """Deploy to the pool, or serve the deployments here (None: the runner did not stop)."""
    from flows import deploy

    url = os.environ["PREFECT_API_URL"]
    what = ", ".join(f"{d.full_name} ({f'cron {d.cron!r}' if d.cron else f'every {d.interval}'})"
                     for d in deploy.schedules(params))  # fmt: skip
    if pool:
        try:
            if deploy.ensure_pool(pool):
                print(f"mloop: created the {deploy.POOL_TYPE} work pool {pool!r}")
            names = deploy.to_pool(params, params_file, ws, pool)
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
        stopped = deploy.serve(deploy.served(params, params_file, ws))
    except Exception as err:  # the runner gave up: the server's answer, shown as it is
        print(f"mloop: serving to {url} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if not stopped:
        return None
    print("mloop: stopped", flush=True)
    return 0
