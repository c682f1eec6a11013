"""The aliases of a registered model, and the champion's history that rollback walks back.

``champion`` is the promoted version, ``challenger`` the newest trained one, and
``champion-compressed`` the shipped compressed variant of the champion: it moves
with ``champion`` (``follow_champion``), so what is served follows the registry.
"""

from __future__ import annotations

import json

CHAMPION = "champion"
CHALLENGER = "challenger"
COMPRESSED = "champion-compressed"
HISTORY_TAG = "mloop.champion_history"


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException  # heavy: the CLI's help imports this module

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(client, name: str) -> str:
    """The ``champion`` version; a stage that needs one and finds none says what to run."""
    version = alias_version(client, name, CHAMPION)
    if version is None:
        raise RuntimeError(f"no {CHAMPION} version of {name!r}; run the register stage first")
    return version


def history(client, name: str) -> list[str]:
    """The versions that were champion, oldest first (the current one last)."""
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def set_history(client, name: str, versions: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(versions))


def crown(client, name: str, version: str) -> None:
    """Move ``champion`` (and ``champion-compressed`` with it) to ``version``; record it."""
    set_history(client, name, [v for v in history(client, name) if v != version] + [version])
    client.set_registered_model_alias(name, CHAMPION, version)
    follow_champion(client, name, version)


def follow_champion(client, name: str, champion: str) -> str | None:
    """Point ``champion-compressed`` at the newest compressed variant of ``champion``, or
    remove it when that champion has none (then the champion itself is served)."""
    variants = [
        int(mv.version)
        for mv in client.search_model_versions(f"name='{name}'")
        if mv.tags.get("mloop.kind") == "compressed"
        and mv.tags.get("mloop.parent_version") == champion
    ]
    if variants:
        client.set_registered_model_alias(name, COMPRESSED, str(max(variants)))
        return str(max(variants))
    if alias_version(client, name, COMPRESSED) is not None:
        client.delete_registered_model_alias(name, COMPRESSED)
    return None


def register_compressed(name: str, parent: str, uri: str | None, variant) -> str | None:
    """Register the shipped variant of champion ``parent`` as alias ``champion-compressed``;
    with no variant, remove the alias (it must never point at another champion's variant)."""
    import mlflow  # heavy (~10 s): loaded where a version is registered

    client = mlflow.MlflowClient()
    if uri is None:
        if alias_version(client, name, COMPRESSED) is not None:
            client.delete_registered_model_alias(name, COMPRESSED)
        return None
    version = str(
        mlflow.register_model(
            uri,
            name,
            tags={
                "mloop.kind": "compressed",
                "mloop.parent_version": parent,
                "mloop.variant": variant.name,
                "mloop.format": variant.format,
                # its test score: accuracy, or a regression's RMSE (Variant.metric)
                (
                    "test_rmse" if getattr(variant, "metric", "") == "RMSE" else "test_accuracy"
                ): f"{variant.accuracy:.6f}",
                "mloop.speedup": f"{variant.speedup:.3f}",
                "mloop.size_mb": f"{variant.size_bytes / 1e6:.4f}",
            },
        ).version
    )
    client.set_registered_model_alias(name, COMPRESSED, version)
    return version


def compressed_version(client, name: str) -> str | None:
    """The ``champion-compressed`` version, only if it was made from the current champion."""
    version = alias_version(client, name, COMPRESSED)
    if version is None:
        return None
    parent = client.get_model_version(name, version).tags.get("mloop.parent_version")
    return version if parent == alias_version(client, name, CHAMPION) else None
