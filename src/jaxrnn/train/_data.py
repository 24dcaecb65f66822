"""Character-level data: the corpus, its vocabulary, and stateful truncated-BPTT batches.

The default corpus is text every Python installation already has: the standard
library's own top-level ``.py`` files, read at run time in sorted order and
capped at :data:`DEFAULT_MAX_CHARS` characters, so it needs no download, ships
no third-party text, and is identical across runs on the same Python version.

Batching (stateful truncated BPTT): the training text is cut into ``batch``
contiguous streams; step ``i`` of an epoch feeds every stream's ``i``-th chunk
of ``seq_len`` characters, so the hidden state at the end of one chunk is the
right initial state for the next, and is carried across chunks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sysconfig
from pathlib import Path
from typing import NamedTuple

import numpy as np

DEFAULT_MAX_CHARS = 2_000_000
VAL_FRACTION = 0.1


class CorpusError(ValueError):
    """A corpus that cannot be trained on: missing, empty, binary, not UTF-8 or too short."""


class Corpus(NamedTuple):
    """A text and where it came from (``source`` is JSON-serialisable, saved in the run config)."""

    text: str
    source: dict


def default_corpus(max_chars: int = DEFAULT_MAX_CHARS) -> Corpus:
    """The standard library's top-level ``.py`` files, sorted by name, capped at ``max_chars``.

    Files that are not valid UTF-8 are skipped; the last file is truncated to
    the cap. ``source`` records the directory, the Python version, the files
    used, the character count and a SHA-256 of the text.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    names: list[str] = []
    total = 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text[: max_chars - total])
        names.append(path.name)
        total += len(parts[-1])
        if total >= max_chars:
            break
    text = "".join(parts)
    if not text:
        raise CorpusError(f"no readable .py files found in the standard library at {root}")
    source = {
        "kind": "python-stdlib",
        "root": str(root),
        "python": platform.python_version(),
        "files": names,
        "chars": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    return Corpus(text, source)


def read_text_file(path: str | os.PathLike) -> Corpus:
    """Reads a UTF-8 text file; raises :class:`CorpusError` for missing, empty or binary files."""
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"--text {path}: no such file")
    if p.is_dir():
        raise CorpusError(f"--text {path}: is a directory, not a text file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CorpusError(f"--text {path}: cannot read: {e.strerror or e}") from e
    if not data:
        raise CorpusError(f"--text {path}: the file is empty")
    if b"\x00" in data:
        raise CorpusError(f"--text {path}: looks like a binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"--text {path}: not UTF-8 text (invalid byte at offset {e.start}); "
            "convert it to UTF-8 first"
        ) from e
    if not text.strip():
        raise CorpusError(f"--text {path}: the file contains only whitespace")
    source = {
        "kind": "file",
        "path": str(p.resolve()),
        "chars": len(text),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return Corpus(text, source)


def load_corpus(text_file: str | os.PathLike | None = None) -> Corpus:
    """The user's file if ``text_file`` is given, else :func:`default_corpus`."""
    return default_corpus() if text_file is None else read_text_file(text_file)


class Vocab:
    """The characters of a corpus, sorted, mapped to ids ``0..size-1``."""

    def __init__(self, chars: str | list[str]):
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("Vocab: chars must be distinct single characters")
        if not chars:
            raise ValueError("Vocab: empty vocabulary")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        """Every distinct character of ``text``, in code-point order."""
        return cls(sorted(set(text)))

    @property
    def size(self) -> int:
        """Number of distinct characters (the model's input and output size)."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> ``(len(text),)`` int32 ids; ``ValueError`` names unknown characters."""
        try:
            return np.fromiter((self._index[c] for c in text), np.int32, len(text))
        except KeyError:
            unknown = sorted({c for c in text if c not in self._index})
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}") from None

    def decode(self, ids) -> str:
        """Ids -> text."""
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as JSON ``{"chars": [...]}``, atomically."""
        from ._checkpoint import write_atomic

        write_atomic(path, (json.dumps({"chars": self.chars}, ensure_ascii=True) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Reads a vocabulary written by :meth:`save`; ValueError names a corrupt file."""
        try:
            chars = json.loads(Path(path).read_bytes().decode("utf-8"))["chars"]
            return cls(chars)
        except OSError as e:
            raise ValueError(f"{path}: cannot read: {e.strerror or e}") from e
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError too
            raise ValueError(f"{path}: corrupt vocabulary, not a jaxrnn vocab.json ({e})") from e

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(tuple(self.chars))

    def __repr__(self) -> str:
        return f"Vocab(size={self.size})"


def unigram_entropy(ids: np.ndarray, size: int) -> float:
    """Entropy in bits per character of the character frequencies of ``ids``.

    The bits/char of the best model that ignores context: a language model
    that learned anything beats it.
    """
    p = np.bincount(np.asarray(ids).reshape(-1), minlength=size) / max(np.size(ids), 1)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def min_chars(batch: int, seq_len: int, val_fraction: float = VAL_FRACTION) -> int:
    """The shortest corpus :func:`split` accepts for this batch size and chunk length."""
    need = batch * (seq_len + 1)  # each split needs one chunk (plus its target) per stream
    return max(math.ceil(need / val_fraction), math.ceil(need / (1 - val_fraction))) + 1


def check_length(n: int, batch: int, seq_len: int, val_fraction: float = VAL_FRACTION) -> None:
    """Raises :class:`CorpusError` if ``n`` characters are too few for :func:`split`."""
    need = min_chars(batch, seq_len, val_fraction)
    if n < need:
        raise CorpusError(
            f"the text is too short: {n} characters, need at least {need} for "
            f"--batch {batch} --seq-len {seq_len} (with {val_fraction:.0%} held out "
            "for validation); use a longer text or smaller --batch/--seq-len"
        )


def split(
    ids: np.ndarray, batch: int, seq_len: int, val_fraction: float = VAL_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ids into (train, validation): the last ``val_fraction`` is held out.

    Raises :class:`CorpusError` if either part has fewer than
    ``batch * (seq_len + 1)`` characters (one chunk and its targets per stream).
    """
    n = len(ids)
    check_length(n, batch, seq_len, val_fraction)
    cut = n - int(round(n * val_fraction))
    return ids[:cut], ids[cut:]


def streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """``(batch, S)``: the text cut into ``batch`` contiguous streams of equal length."""
    S = len(ids) // batch
    return np.asarray(ids[: batch * S]).reshape(batch, S)


class Batcher:
    """Chunks of the training streams for stateful truncated BPTT.

    Epoch ``e`` starts every stream at an offset in ``[0, seq_len)`` drawn
    from ``(seed, e)``, so chunk boundaries differ between epochs. Chunk ``i``
    of an epoch is ``tokens = s[:, o + i*T : o + (i+1)*T]`` and
    ``targets`` the same shifted by one. The data position is ``(epoch, i)``:
    together with the seed it fully determines the batch. ``rows``: the streams this
    process loads (a multi-process run: its part of the global batch); default all.
    """

    def __init__(
        self, ids: np.ndarray, batch: int, seq_len: int, seed: int, rows: slice = slice(None)
    ):
        self.data = streams(ids, batch)[rows]  # (B, S), or this process's (B_local, S)
        self.seq_len = seq_len
        self.seed = seed
        if self.data.shape[1] < seq_len + 1:
            raise CorpusError("the training split is shorter than one chunk per stream")

    def offset(self, epoch: int) -> int:
        """Where every stream starts in ``epoch`` (0 for the first epoch)."""
        if epoch == 0:
            return 0
        hi = min(self.seq_len, self.data.shape[1] - self.seq_len)  # keep >= 1 chunk
        return int(np.random.default_rng([self.seed, epoch]).integers(hi))

    def chunks_in(self, epoch: int) -> int:
        """Number of chunks in ``epoch``."""
        return (self.data.shape[1] - 1 - self.offset(epoch)) // self.seq_len

    def get(self, epoch: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, targets)``, each ``(B, T)`` int32, for chunk ``chunk`` of ``epoch``.

        With ``rows``, this process's streams only: ``(B_local, T)``.
        """
        start = self.offset(epoch) + chunk * self.seq_len
        window = self.data[:, start : start + self.seq_len + 1]
        return window[:, :-1], window[:, 1:]

    def advance(self, epoch: int, chunk: int) -> tuple[int, int]:
        """The position after ``(epoch, chunk)``; a new epoch restarts at chunk 0."""
        if chunk + 1 < self.chunks_in(epoch):
            return epoch, chunk + 1
        return epoch + 1, 0


def val_chunks(ids: np.ndarray, batch: int, seq_len: int, max_chars: int) -> list:
    """Validation chunks ``[(tokens, targets), ...]``: ``batch`` streams, read start to end.

    At most ``max_chars`` characters are used (from the start of the held-out
    part), so evaluation costs the same however long the text is.
    """
    ids = ids[: max(max_chars, batch * (seq_len + 1))]
    data = streams(ids, batch)
    n = (data.shape[1] - 1) // seq_len
    out = []
    for i in range(n):
        window = data[:, i * seq_len : (i + 1) * seq_len + 1]
        out.append((window[:, :-1], window[:, 1:]))
    return out
