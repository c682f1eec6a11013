"""``mloop model ls|promote|rollback|lineage``: the registry's versions and its champion."""

from __future__ import annotations

import sys

from flows.cli.session import Session


def ls(s: Session) -> int:
    params, ws = s.params(), s.ws
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


def promote(s: Session, version: str, force: bool) -> int:
    """The gate for one version against the champion; ``force`` overrides and is recorded."""
    params, ws = s.params(), s.ws
    from components.register.commands import promote

    try:
        decision = promote(params, ws, version, force=force)
    except (LookupError, ValueError) as err:
        print(f"mloop promote: {err}", file=sys.stderr)
        return 1
    name = params.registry.model_name
    if not decision.promote:
        print(f"mloop promote: {name} version {version} REFUSED: {decision.reason}"
              "\n  (--force overrides the gate; the override is recorded)",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"mloop promote: {name} version {version} is champion ({decision.reason})")
    return _package_champion(params, ws, "promote")


def rollback(s: Session) -> int:
    params, ws = s.params(), s.ws
    from components.register.commands import rollback

    try:
        old, new = rollback(params, ws)
    except RuntimeError as err:
        print(f"mloop rollback: {err}", file=sys.stderr)
        return 1
    print(f"mloop rollback: champion {params.registry.model_name} version {old} -> {new}")
    return _package_champion(params, ws, "rollback")


def _package_champion(params, ws, command: str) -> int:
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


def lineage(s: Session, model: str) -> int:
    s.ws  # noqa: B018 -- points MLflow at the workspace's store
    from components.register.commands import lineage

    try:
        info = lineage(model)
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
