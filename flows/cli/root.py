"""The root of ``mloop`` on Typer, grouped by noun like dvc, mlflow and prefect.

The root owns ``--workspace``, ``--params`` and ``--verbose`` (taken before the command or
after it), ``--version`` and shell completion; ``command`` registers a command under it. The
old flat names (``mloop ingest``, ``mloop models``, ...) stay as hidden aliases this release.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from flows.cli.session import Session, one_line

ALIASES = "old names still work this release: ingest, harvest, batches, validate, models, promote, rollback, lineage"  # noqa: E501

app = typer.Typer(
    name="mloop", no_args_is_help=True, pretty_exceptions_enable=False, epilog=ALIASES,
    help="Validate, train, track, register, compress, serve and monitor: one loop.",
)  # fmt: skip
data_app = typer.Typer(no_args_is_help=True, help="data into the loop, through the gate")
model_app = typer.Typer(no_args_is_help=True, help="the registry: versions and the champion")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")

WorkspaceOpt = Annotated[str | None, typer.Option(
    "--workspace", help="folder of params.yaml and the loop's files (default: .)")]  # fmt: skip
ParamsOpt = Annotated[str | None, typer.Option(
    "--params", help="parameters file (default: WORKSPACE/params.yaml)")]  # fmt: skip
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", help="show tracebacks and the libraries' full logs")]  # fmt: skip
Host = Annotated[str, typer.Option(help="address to listen on")]


def _version(shown: bool) -> None:
    if shown:
        try:
            print(f"mloop {version('mloop')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            print("mloop (not installed)")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context, workspace: WorkspaceOpt = None, params: ParamsOpt = None,
    verbose: VerboseOpt = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print mloop's version and exit")] = False,
) -> None:  # fmt: skip
    """Validate, train, track, register, compress, serve and monitor: one loop."""
    ctx.obj = Session()
    ctx.obj.merge(workspace, params, verbose)


def command(
    group: typer.Typer, name: str, alias: str | None = None, starts_processes: bool = False
):
    """Register ``fn(session, ...)`` as ``mloop [group] name``: the root's options are taken
    after the command too, and an error no command expected is one line (unless --verbose).
    ``alias``: also the old flat ``mloop alias``, hidden. ``starts_processes``: a watchdog ends
    the servers and workers it starts even if mloop is SIGKILLed."""

    def register(fn):
        sig = inspect.signature(fn, eval_str=True)
        own = list(sig.parameters.values())[1:]  # the session is ours to pass
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                 for n, a, d in (("workspace", WorkspaceOpt, None), ("params", ParamsOpt, None),
                                 ("verbose", VerboseOpt, False))]  # fmt: skip
        context = inspect.Parameter("mloop_ctx", inspect.Parameter.KEYWORD_ONLY,
                                    annotation=typer.Context)  # fmt: skip

        @functools.wraps(fn)
        def run(*args, mloop_ctx, workspace=None, params=None, verbose=False, **kwargs):
            session = mloop_ctx.find_root().obj
            session.merge(workspace, params, verbose)
            if starts_processes:
                from components.core import process_family

                process_family.guard()
            return _guarded(name, session, lambda: fn(session, *args, **kwargs))

        run.__signature__ = sig.replace(parameters=[*own, context, *extra])
        hints = typing.get_type_hints(fn, include_extras=True)
        run.__annotations__ = {**hints, "mloop_ctx": typer.Context, "workspace": WorkspaceOpt,
                               "params": ParamsOpt, "verbose": VerboseOpt}  # fmt: skip
        group.command(name)(run)
        if alias:
            app.command(alias, hidden=True)(run)
        return fn

    return register


def _guarded(name: str, session: Session, call) -> int:
    try:
        return call()
    except KeyboardInterrupt:
        print(f"mloop {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # an error no command expected: one line, unless --verbose
        if session.verbose:
            raise
        print(f"mloop {name}: {type(err).__name__}: {one_line(err)}"
              " (--verbose shows the traceback)", file=sys.stderr)  # fmt: skip
        return 1
