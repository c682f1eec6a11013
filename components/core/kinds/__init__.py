"""Data kinds as plug-ins: ``IMAGES``, ``TABLES`` and ``TEXTS``, each a ``DataKind``.

``kind(name)`` is the kind a prepared data set (``meta["kind"]``), a ``RawData`` or a gate
names; ``components.core.kinds.sources`` maps ``data.source`` to how it is read and its kind.
"""

from __future__ import annotations

from components.core.kinds.base import DataKind
from components.core.kinds.images import IMAGES
from components.core.kinds.tables import TABLES
from components.core.kinds.texts import TEXTS

KINDS: dict[str, DataKind] = {k.name: k for k in (IMAGES, TABLES, TEXTS)}


def kind(name: str) -> DataKind:
    """The kind of this name (``image``, ``tabular``, ``text``)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown data kind {name!r}; known: {sorted(KINDS)}") from None
