"""The text kind: a CSV or Parquet file of texts and labels."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds.base import BODY_OVERHEAD, MAX_BATCH, Refused, TooLarge
from components.core.kinds.tables import _decode_csv, _read_parquet, _table_suffix
from components.core.kinds.text_checks import TextChecks
from components.core.messages import short
from components.core.rawdata import DataError, RawData
from components.core.text import text_statistics

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import DataConfig, Params


def _text_frame(path: Path, max_bytes: int | None = None):
    """A CSV (UTF-8 as a whole, every cell as text: "NA" or "null" is a message, not a
    gap) or Parquet file of texts, as read."""
    import pandas as pd

    if _table_suffix(path, max_bytes) != ".csv":
        return _read_parquet(path)
    try:
        return pd.read_csv(io.StringIO(_decode_csv(path)), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise DataError(f"malformed CSV: {err}", path) from None


def read_text_table(path: Path, text: str, label: str, max_bytes: int | None = None) -> RawData:
    """A CSV or Parquet file of texts: a text column and a label column, as read.

    A CSV must be UTF-8 as a whole (else it is refused, naming the first bad byte);
    single texts that hold replacement characters, lone surrogates or control
    characters are left for the gate, which rejects them row by row.
    """
    path = Path(path)
    frame = _text_frame(path, max_bytes)
    missing = [c for c in (text, label) if c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {missing} missing; columns are {list(frame.columns)}", path)
    if text == label:
        raise DataError(f"the text and the label are the same column {text!r}", path)
    frame = frame[[text, label]]
    labels = frame[label].astype(str).where(frame[label].notna(), None).to_numpy()
    return RawData(kind="text", labels=labels, frame=frame, label_column=label,
                   text_column=text, origin=path)  # fmt: skip


def read_unlabelled(path: Path, text: str) -> list[str]:
    """The texts of column ``text`` of a CSV or Parquet file with no labels (pre-training
    texts); blank ones are left out."""
    path = Path(path)
    frame = _text_frame(path)
    if text not in frame.columns:
        raise DataError(f"no text column {text!r}; columns are {list(frame.columns)}", path)
    texts = frame[text].dropna().astype(str)
    return texts[texts.str.strip() != ""].tolist()


# ---------------------------------------------------------------- simulated changes

NOISE_SHARE = 0.3  # of the letters, in a noisy text
NOISE_CHARACTERS = np.array(list("0123456789#@$%&*+=/"))


def changed_texts(texts: list[str], fault: str, rng: np.random.Generator) -> list[str]:
    """``texts`` unchanged (``clean``, ``none``); ``noise`` replaces a share of the letters
    with digits and symbols (typing noise, a broken encoder upstream); ``shift`` appends a
    phone number and a code to every text (another kind of sender); ``invert`` swaps upper
    and lower case (a new source whose texts look unlike the training ones)."""
    if fault in ("clean", "none"):
        return list(texts)
    if fault == "shift":
        return [f"{t} Call +44 7911 {rng.integers(100000, 999999)} #{i}" for i, t in
                enumerate(texts)]  # fmt: skip
    if fault == "invert":
        return [t.swapcase() for t in texts]
    if fault != "noise":
        raise ValueError(f"unknown batch kind {fault!r}")
    out = []
    for text in texts:
        chars = np.array(list(text))
        letters = np.flatnonzero(np.char.isalpha(chars))
        hit = letters[rng.random(len(letters)) < NOISE_SHARE]
        chars[hit] = rng.choice(NOISE_CHARACTERS, size=len(hit))
        out.append("".join(chars))
    return out


@dataclass(frozen=True)
class TextBatch:
    """Texts to send to /predict_text, as traffic (``Texts.traffic``)."""

    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)


class Texts(TextChecks):
    name, noun, route, batch_format, row_table = "text", "texts", "/predict_text", "table", True
    family = "transformer"
    baselines = ("tfidf",)
    tokenized, report_note = True, "Texts: the per-text statistics."
    # characters, share of non-letters, share of digits, share of unknown tokens, words
    logged = ("chars", "non_letter", "digits", "unknown", "words")
    drifting = ("chars", "non_letter", "digits", "unknown")

    def describe(self, texts, unknown_share) -> np.ndarray:
        """``logged`` of each text, N x 5: what the inference log keeps of it
        (``unknown_share``: the share of its tokens the tokenizer did not know)."""
        stats = text_statistics(texts)
        return np.stack(
            [stats["chars"], stats["non_letter"], stats["digits"],
             np.asarray(unknown_share, np.float64), stats["words"]], axis=1,
        ).astype(np.float64)  # fmt: skip

    def encode(self, raw: RawData, train_idx: np.ndarray, cfg: DataConfig, out_dir: Path,
               previous: dict | None, given=None) -> tuple[np.ndarray, dict]:  # fmt: skip
        """Token ids by the WordPiece tokenizer learnt on the training texts
        (``tokenizer.tokenize``), saved beside the splits; meta.json's "text" names it."""
        from components.core.kinds.tokenizer import tokenize  # tokenizers: where texts are

        text = (previous or {}).get("text")
        encoded = tokenize(raw, train_idx, cfg.text, out_dir, text, given)
        return encoded.ids, {"text": encoded.info}

    def changed(self, texts: list[str], fault: str, rng: np.random.Generator) -> list[str]:
        return changed_texts(texts, fault, rng)

    def traffic(self, prepared: Path, meta: dict, fault: str, params: Params):
        """The test split's texts, changed by ``fault``, and their labels (class names,
        as the service answers them): what ``mloop traffic`` sends."""
        from components.core.splits import load_rows

        rows = load_rows(prepared, "test")
        texts = changed_texts(rows[meta["text"]["column"]].tolist(), fault,
                              np.random.default_rng(params.seed))  # fmt: skip
        return TextBatch(texts), rows[meta["text"]["label"]].astype(str).to_numpy()

    def request(self, texts, max_chars: int) -> list[str]:
        """A request's ``texts`` (one text or a list of them), checked: ``Refused`` for what
        is not text or holds no character, ``TooLarge`` beyond ``MAX_BATCH`` texts or
        ``max_chars`` characters in one (gate.max_text_chars)."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            raise Refused("texts must be a text or a non-empty list of texts")
        if len(texts) > MAX_BATCH:
            raise TooLarge(f"at most {MAX_BATCH} texts a request, got {len(texts)}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise Refused(f"texts[{i}] is not a text: {short(text)}")
            if len(text) > max_chars:
                raise TooLarge(f"texts[{i}] has {len(text):,} characters; at most {max_chars:,}")
            if not text.strip():
                raise Refused(f"texts[{i}] is empty or only whitespace")
        return texts

    def as_served(self, x: np.ndarray, meta: dict) -> np.ndarray:
        """Token ids without the padding columns after the batch's longest text."""
        from components.core.kinds.tokenizer import trimmed

        return trimmed(x, int(meta["text"].get("pad_id", 0)))

    def body_limit(self, meta: dict, max_file_bytes: int) -> int:
        """Its largest batch of its longest texts: a character takes at most 6 bytes in
        JSON (``\\uXXXX``)."""
        return MAX_BATCH * (int(meta["text"]["max_chars"]) * 6 + 8) + BODY_OVERHEAD

    def read_batch(self, batch, cfg: DataConfig, reference: RawData, images_out: Path) -> RawData:
        if batch.format != "table":
            raise DataError(f"batch {batch.id} holds images; the data set is texts", batch.folder)
        return read_text_table(batch.folder / batch.data[0], cfg.text.text, cfg.text.label)


TEXTS = Texts()
