"""``mloop data ingest|harvest|batches|validate``: data into the loop, through the gate."""

from __future__ import annotations

import sys
from pathlib import Path

from components.core.config import ParamsError, load_params, parse_params
from flows.cli.session import Session


def ingest(s: Session, path: Path | None) -> int:
    params, ws = s.logged().params(), s.ws
    from components.ingest.ingest import IngestError, ingest, ingest_incoming

    try:
        if path is None:  # the drop folder, as the scheduled flow ingests it
            found = ingest_incoming(params, ws)
            for result in found.results:
                print(f"mloop ingest: {result.summary()}",
                      file=sys.stdout if result.accepted else sys.stderr)  # fmt: skip
            print(f"mloop ingest: {found.summary()} ({ws.incoming})")
            return 0 if all(r.accepted for r in found.results) else 1
        result = ingest(path, params, ws)
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


def harvest(s: Session, sources: list[str] | None) -> int:
    params, ws = s.logged().params(), s.ws
    from components.ingest.harvest import harvest

    if sources:  # only these labellers' labels, this once
        chosen = params.ingest.model_copy(update={"harvest_sources": sources})
        params = params.model_copy(update={"ingest": chosen})
    result = harvest(params, ws)
    print(f"mloop {result.summary()}", file=sys.stdout if result.batch else sys.stderr)
    return 0 if result.batch else 1


def batches(s: Session, exclude: str | None = None, include: str | None = None,
            reason: str = "") -> int:  # fmt: skip
    params, ws = s.params(), s.ws
    from components.core.messages import printable
    from components.prepare import batches as stored

    try:
        if exclude and include:
            raise stored.BatchError("--exclude or --include, not both")
        if exclude:
            b = stored.exclude(ws.batches, exclude, printable(reason)[:200] or "set aside",
                               ws.batch_lock)  # fmt: skip
            print(f"mloop batches: {b.id} set aside ({b.excluded}); no later run reads it"
                  f" (mloop data batches --include {b.id} takes it back)")  # fmt: skip
        elif include:
            b = stored.include(ws.batches, include, ws.batch_lock)
            print(f"mloop batches: {b.id} is read again by the next run (if in the window)")
        found = stored.list_batches(ws.batches)
    except (stored.BatchError, ValueError) as err:
        print(f"mloop batches: {err}", file=sys.stderr)
        return 1
    if not found:
        print(f"no accepted batches in {ws.batches}: mloop ingest PATH or mloop harvest adds one")
        return 0
    window = {b.id for b in stored.in_window(found, params.data.batches)}
    print(f"{'batch':<11} {'arrived (UTC)':<21} {'rows':>9}  {'source':<8} {'sha256':<12}  window")
    for b in found:
        read = "yes" if b.id in window else f"no: set aside {b.excluded}" if b.excluded else "no"
        print(f"{b.id:<11} {b.arrived_iso:<21} {b.rows:>9,}  {b.source:<8} {b.sha256[:12]:<12}"
              f"  {read}")  # fmt: skip
    return 0


def validate(s: Session, data: Path, label: str | None, text: str | None) -> int:
    ws = s.logged().ws
    try:
        if s.params_file or ws.params.is_file():
            params = load_params(s.params_path)
        else:  # validating a file needs no project: the default rules apply
            params = parse_params({})
    except ParamsError as err:
        print(f"mloop: {err}", file=sys.stderr)
        return 2
    from components.core.rawdata import DataError
    from components.validate.report import DataValidationError
    from components.validate.stage import validate_path

    try:
        result = validate_path(data, params, ws, label=label, text=text)
    except DataError as err:
        print(f"mloop validate: REJECTED {err}", file=sys.stderr)
        if err.quarantine:
            print(f"  quarantined (reason, and the file if it is one): {err.quarantine}",
                  file=sys.stderr)  # fmt: skip
        return 1
    if not result.passed:
        print(f"mloop validate: {DataValidationError(result)}", file=sys.stderr)
        return 1
    print(f"mloop validate: PASSED, {result.summary()} in {result.seconds:.1f}s")
    print(f"  report: {result.html_report}")
    return 0
