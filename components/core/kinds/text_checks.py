"""The text kind's part of the data gate: one row per text, its statistics, whether it is
blank or holds characters of a broken encoding, its digest (exact duplicates) and whether
the same text carries another label elsewhere (``_conflict``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from components.core.kinds.base import DataKind
from components.core.kinds.gate import GateInput, mean_band, split_column
from components.core.text import TEXT_STATISTICS, text_statistics

if TYPE_CHECKING:
    from components.core.config import ValidateConfig
    from components.core.rawdata import RawData

TEXT_DRIFTING = ("chars", "non_letter")  # their means are held to the reference profile's
# Characters no honest text holds: the replacement character (a decoder gave up upstream),
# lone surrogates, and control characters other than tab and line breaks.
BAD_CHARACTERS = r"[\ufffd\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
TEXT_COLUMNS = ["_split", "_label", *TEXT_STATISTICS, "blank", "bad_encoding", "_digest",
                "_conflict", "_text"]  # fmt: skip


def text_table(frame, text: str, label: str, splits=None):
    """One row per text (``TEXT_COLUMNS``); ``_text`` keeps it for the report's examples and
    quarantine."""
    import pandas as pd

    texts = frame[text].astype(str).where(frame[text].notna(), "")
    table = pd.DataFrame({
        "_split": splits if splits is not None else "all",
        "_label": frame[label].astype(str).where(frame[label].notna(), None).to_numpy(),
        **text_statistics(texts),
        "blank": texts.str.strip().eq("").to_numpy(),
        "bad_encoding": texts.str.contains(BAD_CHARACTERS, regex=True).to_numpy(),
    })  # fmt: skip
    table["_digest"] = pd.util.hash_pandas_object(texts, index=False).astype(str).to_numpy()
    labels_per_text = table.groupby("_digest")["_label"].transform("nunique")
    table["_conflict"] = (labels_per_text > 1).to_numpy()
    table["_text"] = texts.to_numpy()
    return table


class TextChecks(DataKind):
    def gate_table(self, raw: RawData, splits=None):
        return text_table(raw.frame, raw.text_column, raw.label_column, splits)

    def prepared_gate(self, prepared: Path, meta: dict) -> GateInput:
        """The kept texts: duplicates dropped by rule are not gated."""
        import pandas as pd

        from components.core.splits import load_rows, split_names

        names = split_names(meta)
        frames = [load_rows(prepared, s) for s in names]
        column, label = meta["text"]["column"], meta["text"]["label"]
        table = text_table(pd.concat(frames, ignore_index=True), column, label,
                           split_column(names, frames))  # fmt: skip
        return GateInput(
            of=self, table=table, label_column=label, text_column=column, name=meta["name"],
            origin=Path(meta["origin"]) if meta["origin"] else None,
        )  # fmt: skip

    def expectations(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None):
        import great_expectations as gx

        E = gx.expectations
        exps = [
            E.ExpectTableColumnsToMatchSet(column_set=TEXT_COLUMNS, exact_match=True),
            E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
            E.ExpectColumnValuesToNotBeNull(column="_label"),
            E.ExpectColumnUniqueValueCountToBeBetween(column="_label", min_value=2),
            E.ExpectColumnValuesToBeInSet(column="blank", value_set=[False]),
            E.ExpectColumnValuesToBeInSet(column="bad_encoding", value_set=[False]),
            E.ExpectColumnValuesToBeBetween(column="chars", max_value=cfg.max_text_chars),
            E.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column="_digest", min_value=1.0 - cfg.max_duplicate_share
            ),
        ]
        if gate.conflicts == "fail":  # else prepare settles them by the declared policy
            exps.append(E.ExpectColumnValuesToBeInSet(column="_conflict", value_set=[False]))
        if reference:
            for col in TEXT_DRIFTING:
                stat = reference["text_stats"][col]
                shift = cfg.max_text_shift * abs(stat["mean"])
                low, high = mean_band(stat, len(gate.table), shift)
                exps.append(E.ExpectColumnMeanToBeBetween(column=col, min_value=low,
                                                          max_value=high))  # fmt: skip
        return exps

    def row_faults(self, gate: GateInput, cfg: ValidateConfig, reference: dict | None,
                   faults_only: bool) -> list:  # fmt: skip
        t = gate.table
        faults = [
            (t["blank"], "empty or whitespace-only text"),
            (t["bad_encoding"], "characters of a broken encoding"),
            (t["chars"] > cfg.max_text_chars, f"longer than {cfg.max_text_chars} characters"),
        ]
        if not faults_only:
            faults += [(t["_digest"].duplicated() & ~t["_conflict"], "duplicate text"),
                       (t["_conflict"], "the same text with another label elsewhere")]  # fmt: skip
        return [*faults, (t["_label"].isna(), "no label")]

    def as_given(self, gate: GateInput, mask):
        rows = gate.table.loc[mask, ["_text", "_label"]]
        return rows.rename(columns={"_text": gate.text_column, "_label": gate.label_column})

    def profile_of(self, gate: GateInput) -> dict:
        t = gate.table
        return {
            "label_column": gate.label_column,
            "text_column": gate.text_column,
            "text_stats": {
                c: {"mean": float(t[c].mean()), "std": float(t[c].std(ddof=0))}
                for c in TEXT_DRIFTING
            },  # fmt: skip
        }

    def described(self, gate: GateInput) -> dict[str, str]:
        return {c: "numeric" for c in TEXT_STATISTICS}
