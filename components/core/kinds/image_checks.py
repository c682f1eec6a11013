"""The image kind's part of the data gate: images are not checked one column per pixel
(slow, and meaningless across image sizes) but as a table of per-image statistics: shape,
channels, mean, std, min, max, finiteness and a digest (duplicates) per image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds.base import DataKind
from components.core.kinds.gate import GateInput, digests

if TYPE_CHECKING:
    from components.core.config import ValidateConfig
    from components.core.rawdata import RawData

IMAGE_COLUMNS = [
    "split", "label", "height", "width", "channels",
    "mean", "std", "min", "max", "finite", "digest",
]  # fmt: skip
IMAGE_STATISTICS = ("mean", "std", "min", "max")  # what the report draws of each image


def image_table(images: np.ndarray, labels, splits=None, block: int = 4096):
    """One row per image: the statistics the suite checks, a block of images at a time
    (``images`` may be memory-mapped and larger than memory)."""
    import pandas as pd

    n = len(images)
    stats = {k: np.empty(n) for k in IMAGE_STATISTICS}
    finite, found = np.empty(n, dtype=bool), []
    for start in range(0, n, block):
        rows = np.asarray(images[start : start + block]).reshape(-1, int(np.prod(images.shape[1:])))
        flat = rows.astype(np.float64)
        end = start + len(rows)
        with np.errstate(invalid="ignore"):
            stats["mean"][start:end], stats["std"][start:end] = flat.mean(1), flat.std(1)
            stats["min"][start:end], stats["max"][start:end] = flat.min(1), flat.max(1)
        finite[start:end] = np.isfinite(flat).all(axis=1)
        found += digests(np.ascontiguousarray(rows))
    channels = images.shape[1] if images.ndim == 4 else 1
    return pd.DataFrame(
        {
            "split": splits if splits is not None else "all",
            "label": np.asarray(labels).astype(str),
            "height": images.shape[-2],
            "width": images.shape[-1],
            "channels": channels,
            **stats,
            "finite": finite,
            "digest": found,
        }
    )[IMAGE_COLUMNS]


def pixel_max_of(gate: GateInput, cfg: ValidateConfig) -> float:
    return cfg.pixel_max if cfg.pixel_max is not None else gate.pixel_max


class ImageChecks(DataKind):
    gate_label, gate_split = "label", "split"

    def gate_table(self, raw: RawData, splits=None):
        return image_table(raw.images, raw.labels, splits)

    def prepared_gate(self, prepared: Path, meta: dict) -> GateInput:
        """Each split read a block at a time: no concatenation of the pixels."""
        import pandas as pd

        from components.core.splits import RowFile, load_split, split_names

        tables = []
        for name in split_names(meta):
            y = load_split(prepared, name).y
            labels = np.asarray(meta["classes"], dtype=object)[y]
            tables.append(image_table(RowFile(prepared / f"{name}_x.npy"), labels, [name] * len(y)))
        return GateInput(
            of=self, table=pd.concat(tables, ignore_index=True), pixel_max=meta["pixel_max"],
            rejected=[(r["file"], r["reason"]) for r in meta["rejected"]],
            origin=Path(meta["origin"]) if meta["origin"] else None, name=meta["name"],
        )  # fmt: skip

    def expectations(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None):
        import great_expectations as gx

        E = gx.expectations
        exps = [
            E.ExpectTableColumnsToMatchSet(column_set=IMAGE_COLUMNS, exact_match=True),
            E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
            E.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2),
            E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
            E.ExpectColumnValuesToBeBetween(column="min", min_value=cfg.pixel_min),
            E.ExpectColumnValuesToBeBetween(column="max", max_value=pixel_max_of(gate, cfg)),
            E.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column="digest", min_value=1.0 - cfg.max_duplicate_share
            ),
            *(E.ExpectColumnValuesToNotBeNull(column=c) for c in IMAGE_STATISTICS),
        ]
        if reference:
            shape = reference["image"]
            exps += [
                E.ExpectColumnValuesToBeInSet(column=c, value_set=[shape[c]])
                for c in ("height", "width", "channels")
            ]
        return exps

    def row_faults(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None,
                   faults_only: bool) -> list:  # fmt: skip
        t = gate.table
        out_of_range = (t["min"] < cfg.pixel_min) | (t["max"] > pixel_max_of(gate, cfg))
        faults = [
            (~t["finite"], "NaN or infinite pixel"),
            (out_of_range, "pixel value out of range"),
        ]
        if not faults_only:
            faults.append((t["digest"].duplicated(), "duplicate image"))
        return faults

    def profile_of(self, gate: GateInput) -> dict:
        t = gate.table
        return {"image": {c: int(t[c].iloc[0]) for c in ("height", "width", "channels")}}

    def same_profile(self, profile: dict, gate: GateInput) -> bool:
        return True

    def described(self, gate: GateInput) -> dict[str, str]:
        return {c: "numeric" for c in IMAGE_STATISTICS}
