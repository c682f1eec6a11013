"""What an explanation looks like to the person who sent the input, per data kind.

A view turns a kind's inputs into what an explainer reads and its scores back into the
user's terms, and gives Integrated Gradients its baseline:

- ``TableView``: rows; the baseline is the training split's mean row; scores come back per
  source column, a categorical column's one-hot scores summed into it.
- ``TextView``: texts, read with the model's tokenizer; the baseline puts ``[PAD]`` in place
  of each word (``[CLS]``, ``[SEP]`` and padding stay); word pieces are merged into the
  words they came from (the tokenizer's word ids and character offsets).
- ``ImageView``: pixels; the baseline is a blank image; scores come back as a coarse grid
  of cells (at most ``GRID`` x ``GRID``), each the sum of its pixels' (and colours') scores.

``view_of(kind, ...)`` picks the view by what the kind is made of (``DataKind.features``,
``tokenized``, ``pixels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID = 8  # an image's map: at most this many cells a side


@dataclass(frozen=True)
class TableView:
    encoding: object  # core.kinds.encoding.TableEncoding
    mean: np.ndarray  # the training split's mean encoded row (gaps filled as the net fills)

    @property
    def columns(self) -> list[str]:
        return [*self.encoding.numeric, *self.encoding.categorical]

    def source_index(self) -> np.ndarray:
        """For each encoded column, the index of its source column in ``columns``."""
        index = list(range(len(self.encoding.numeric)))
        for j, cats in enumerate(self.encoding.categorical.values()):
            index += [len(self.encoding.numeric) + j] * len(cats)
        return np.asarray(index, np.int64)

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Encoded rows with each gap as the network fills it (it answers the same)."""
        x = np.asarray(x, np.float32).copy()
        fill = np.asarray(self.encoding.feature_fill, np.float32)
        gaps = np.isnan(x)
        x[gaps] = np.broadcast_to(fill, x.shape)[gaps]
        return x

    def baseline(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean.astype(np.float32), np.shape(x)).copy()

    def by_column(self, scores: np.ndarray) -> np.ndarray:
        """N x encoded scores as N x source-column scores (one-hot blocks summed)."""
        out = np.zeros((len(scores), len(self.columns)))
        np.add.at(out.T, self.source_index(), np.asarray(scores, np.float64).T)
        return out

    def answer(self, scores: np.ndarray, rows: list[dict] | None = None) -> list[list[dict]]:
        """Per row: ``{"column", "value", "attribution"}`` for each source column, the
        largest magnitude first (``value``: the row as sent, when given)."""
        out = []
        for i, line in enumerate(self.by_column(scores)):
            order = np.argsort(-np.abs(line), kind="stable")
            out.append([{"column": self.columns[j],
                         **({"value": rows[i].get(self.columns[j])} if rows else {}),
                         "attribution": round(float(line[j]), 6)} for j in order])  # fmt: skip
        return out


@dataclass(frozen=True)
class TextView:
    tokenizer: object  # tokenizers.Tokenizer: the model's own
    max_length: int

    def encoded(self, texts: list[str]):
        """Token ids (N x the longest text's length) and each text's encoding."""
        from components.core.kinds.tokenizer import encodings, pad_token, trimmed

        found = encodings(self.tokenizer, texts, self.max_length)
        ids = np.asarray([e.ids for e in found], np.int64).reshape(len(found), self.max_length)
        return trimmed(ids, pad_token(self.tokenizer)[1]), found

    def trimmed(self, ids: np.ndarray) -> np.ndarray:
        from components.core.kinds.tokenizer import pad_token, trimmed

        return trimmed(np.asarray(ids, np.int64), pad_token(self.tokenizer)[1])

    def id_words(self, ids: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        """One text's words from its token ids alone (a split keeps no texts): a piece
        that continues a word (WordPiece's ``##``) joins the one before it."""
        prefix = getattr(self.tokenizer.model, "continuing_subword_prefix", None)
        special, words = self.special(), []
        for token, score in zip(np.asarray(ids).tolist(), scores, strict=True):
            if token in special:
                continue
            piece = self.tokenizer.id_to_token(token) or ""
            if prefix and piece.startswith(prefix) and words:
                words[-1][0].append(token)
                words[-1][1] += float(score)
            else:
                words.append([[token], float(score)])
        return [(self.tokenizer.decode(found), total) for found, total in words]

    def baseline(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` with ``[PAD]`` in place of every token but the tokenizer's special ones
        (kept: the model reads a text's frame, only its words are taken away)."""
        from components.core.kinds.tokenizer import pad_token

        special = np.isin(ids, list(self.special()))
        return np.where(special, ids, pad_token(self.tokenizer)[1])

    def special(self) -> set[int]:
        from components.core.kinds.tokenizer import pad_token

        found = {pad_token(self.tokenizer)[1]}
        for token in self.tokenizer.get_added_tokens_decoder().values():
            if token.special:
                found.add(self.tokenizer.token_to_id(token.content))
        return {i for i in found if i is not None}

    @staticmethod
    def words(text: str, encoding, scores: np.ndarray) -> list[tuple[str, float]]:
        """A text's words in order, each with the sum of its pieces' scores."""
        spans: dict[int, list] = {}
        for position, word in enumerate(encoding.word_ids[: len(scores)]):
            if word is None:  # [CLS], [SEP], padding
                continue
            start, end = encoding.offsets[position]
            span = spans.setdefault(word, [start, end, 0.0])
            span[0], span[1] = min(span[0], start), max(span[1], end)
            span[2] += float(scores[position])
        return [(text[s:e], total) for s, e, total in spans.values()]

    def answer(self, texts: list[str], found, scores: np.ndarray) -> list[list]:
        """Per text: ``[word, attribution]`` pairs in the text's order."""
        return [[[w, round(s, 6)] for w, s in self.words(t, e, row)]
                for t, e, row in zip(texts, found, scores, strict=True)]  # fmt: skip


@dataclass(frozen=True)
class ImageView:
    shape: tuple  # the model's input: (H, W) or (C, H, W)

    def baseline(self, x: np.ndarray) -> np.ndarray:
        return np.zeros_like(np.asarray(x, np.float32))

    def cells(self) -> tuple[int, int]:
        height, width = self.shape[-2:]
        return math.ceil(height / min(GRID, height)), math.ceil(width / min(GRID, width))

    def grid(self, scores: np.ndarray) -> np.ndarray:
        """N x the input's shape as N x rows x columns of cells (colours summed)."""
        scores = np.asarray(scores, np.float64)
        if scores.ndim == 4:
            scores = scores.sum(1)
        n, height, width = scores.shape
        ch, cw = self.cells()
        rows, cols = math.ceil(height / ch), math.ceil(width / cw)
        padded = np.zeros((n, rows * ch, cols * cw))
        padded[:, :height, :width] = scores
        return padded.reshape(n, rows, ch, cols, cw).sum((2, 4))

    def answer(self, scores: np.ndarray) -> list[dict]:
        ch, cw = self.cells()
        return [{"cell": [ch, cw], "grid": np.round(g, 6).tolist()} for g in self.grid(scores)]


def view_of(kind, meta: dict, mean=None, tokenizer=None):
    """The view of a data kind (``DataKind``) for a model of the prepared data ``meta``
    (tables: ``mean``, the baseline row: a network's ``DataSpec.feature_mean``, the mean
    of the training split it learnt from, gaps filled; zeros where none is given)."""
    from components.core.kinds.encoding import TableEncoding

    if kind.features:
        encoding = TableEncoding.from_schema(meta["schema"])
        size = len(encoding.encoded)
        return TableView(encoding, np.zeros(size) if not mean else np.asarray(mean, np.float64))
    if kind.tokenized:
        from components.core.kinds.tokenizer import saved_length

        return TextView(tokenizer, saved_length(tokenizer))
    return ImageView(tuple(meta["input_shape"]))
