"""Pretrained word vectors for the tagger's embedding: read a GloVe / word2vec / fastText text file, or build one
from unlabelled text that is here.

Building: positive pointwise mutual information over a symmetric window, with context-distribution smoothing,
factorised by a truncated SVD (Levy, Goldberg & Dagan 2015 show this matches skip-gram on similarity tasks when
tuned alike). Counting is numpy and scipy.sparse; the SVD is scikit-learn's randomized solver. On 2 CPU cores the
shipped English vectors (about 25 million words) take a few minutes::

    python -m nlp_rnn.word_vectors --out runs/vectors/english-100d.txt \\
        --text stanfordnlp/imdb:train+unsupervised:text --text eriktks/conll2003:train:tokens ...

A ``--text`` is ``DATASET:SPLIT[+SPLIT]:COLUMN`` (a hub id, resolved under ``$NLP_RNN_DATA_DIR`` like every
config, or a folder); a column of strings is split into words by the tagger's rule
(:func:`nlp_rnn.tasks.tagging.split_words`), a column of token lists is read as it is. Words are normalised as
the tagger's default vocabulary normalises them (NFKC, lowercase, every digit read as 0).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from nlp_rnn.errors import NlpRnnError
from nlp_rnn.io import atomic_write

log = logging.getLogger(__name__)


@dataclass
class WordVectors:
    """Words (normalised, first occurrence kept, in file order) and their vectors (len(words), dim)."""

    words: list[str]
    vectors: torch.Tensor

    @classmethod
    def read(cls, path: Path, dim: int, normalize: Callable[[str], str] = str) -> WordVectors:
        """A text file of ``word v1 ... vd`` lines (an optional ``count dim`` header line, as word2vec writes).
        Each word is normalised as the vocabulary will read it; a vector of the wrong size is one clear error."""
        if not path.is_file():
            raise NlpRnnError(f"{path}: no such word-vectors file")
        words, rows, seen = [], [], set()
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec's header
                if len(parts) < 2:
                    continue
                if len(parts) - 1 < dim or (not words and len(parts) - 1 != dim):
                    raise NlpRnnError(f"{path}:{number}: a vector of {len(parts) - 1} numbers; model.embedding_dim "
                                      f"is {dim} (they must match)")
                word = normalize(" ".join(parts[:-dim]))  # a few files hold words with spaces in them
                if not word or word in seen:
                    continue
                try:
                    rows.append([float(x) for x in parts[-dim:]])
                except ValueError:
                    raise NlpRnnError(f"{path}:{number}: not a number in the vector of {parts[0]!r}") from None
                seen.add(word)
                words.append(word)
        if not words:
            raise NlpRnnError(f"{path}: no word vectors in the file")
        log.info("read %d word vectors of %d dimensions from %s", len(words), dim, path)
        return cls(words, torch.tensor(rows, dtype=torch.float32))

    @torch.no_grad()
    def copy_into(self, embedding: nn.Embedding, tokenizer: Tokenizer) -> int:
        """Initialise ``embedding``: the vocabulary's words that have a vector get it; the others are drawn at the
        vectors' scale (N(0, std)); padding stays zero. Returns how many words got a vector."""
        index = {word: i for i, word in enumerate(self.words)}
        std = float(self.vectors.std())
        embedding.weight.normal_(0.0, std)
        found = 0
        for token, token_id in tokenizer.get_vocab().items():
            row = index.get(token)
            if row is not None:
                embedding.weight[token_id] = self.vectors[row]
                found += 1
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx].zero_()
        log.info("word vectors for %d of %d vocabulary words", found, embedding.num_embeddings)
        return found


def normalize_word(word: str, lowercase: bool = True, zero_digits: bool = True) -> str:
    """NFKC, lowercased, digits read as 0: the tagger's default word vocabulary (``TaggerConfig``)."""
    word = "".join(unicodedata.normalize("NFKC", word).split())  # NFKC may make spaces ("\u00b4" -> " \u0301")
    if lowercase:
        word = word.lower()
    return re.sub(r"\d", "0", word) if zero_digits else word


def ppmi_svd(sentences: Iterable[list[str]], dim: int = 100, window: int = 5, min_count: int = 5,
             max_words: int = 50000, smoothing: float = 0.75, seed: int = 0) -> WordVectors:
    """Word vectors from co-occurrence counts: PPMI (contexts weighted 1/distance within ``window``, context counts
    raised to ``smoothing``), then a rank-``dim`` SVD; a word's vector is U * sqrt(S) (Levy et al. 2015)."""
    from scipy import sparse
    from sklearn.utils.extmath import randomized_svd

    sentences = [s for s in sentences if s]
    counts = Counter(word for sentence in sentences for word in sentence)
    vocabulary = [w for w, c in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if c >= min_count]
    vocabulary = vocabulary[:max_words]
    if len(vocabulary) <= dim:
        raise NlpRnnError(f"only {len(vocabulary)} words occur {min_count}+ times: too few for {dim}-d vectors")
    index = {word: i for i, word in enumerate(vocabulary)}
    # one stream of ids; -1 for rare words and between sentences, so no window crosses a sentence
    stream = np.fromiter((index.get(word, -1) for sentence in sentences for word in (*sentence, None)),
                         dtype=np.int32)
    size = len(vocabulary)
    cooccurrence = sparse.csr_matrix((size, size), dtype=np.float64)
    for distance in range(1, window + 1):
        left, right = stream[:-distance], stream[distance:]
        valid = (left >= 0) & (right >= 0)
        pairs = sparse.coo_matrix((np.full(int(valid.sum()), 1.0 / distance), (left[valid], right[valid])),
                                  shape=(size, size)).tocsr()
        cooccurrence = cooccurrence + pairs + pairs.T
    cooccurrence = cooccurrence.tocoo()
    word_totals = np.asarray(cooccurrence.sum(axis=1)).ravel()
    context_totals = np.asarray(cooccurrence.sum(axis=0)).ravel() ** smoothing
    rows, cols, values = cooccurrence.row, cooccurrence.col, cooccurrence.data
    pmi = (np.log(values) + np.log(cooccurrence.sum()) - np.log(word_totals[rows])
           - np.log(context_totals[cols] / context_totals.sum() * cooccurrence.sum()))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (rows[keep], cols[keep])), shape=(size, size))
    u, s, _ = randomized_svd(ppmi, n_components=dim, n_iter=5, random_state=seed)
    vectors = u * np.sqrt(s)  # (words, dim)
    vectors /= vectors.std()
    return WordVectors(vocabulary, torch.from_numpy(vectors.astype(np.float32)))


def write_vectors(vectors: WordVectors, path: Path) -> None:
    """word2vec's text format: a ``count dim`` header, then ``word v1 ... vd`` per line (written atomically)."""
    def write(temp) -> None:
        with open(temp, "w", encoding="utf-8") as out:
            out.write(f"{len(vectors.words)} {vectors.vectors.size(1)}\n")
            for word, row in zip(vectors.words, vectors.vectors.tolist(), strict=True):
                out.write(word + " " + " ".join(f"{x:.5f}" for x in row) + "\n")

    atomic_write(path, write)


def read_corpus(spec: str, lowercase: bool = True, zero_digits: bool = True) -> Iterator[list[str]]:
    """The sentences (or documents) of ``DATASET:SPLIT[+SPLIT]:COLUMN`` as lists of normalised words."""
    from nlp_rnn.data import load_raw, resolve_dataset
    from nlp_rnn.tasks.tagging import split_words

    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise NlpRnnError(f"--text {spec!r}: expected DATASET:SPLIT:COLUMN, e.g. stanfordnlp/imdb:train:text")
    dataset, splits, column = parts
    raw = load_raw(resolve_dataset(dataset))
    for split in splits.split("+"):
        if split not in raw:
            raise NlpRnnError(f"--text {spec!r}: no split {split!r} (splits: {', '.join(raw)})")
        if column not in raw[split].column_names:
            raise NlpRnnError(f"--text {spec!r}: no column {column!r} (columns: {', '.join(raw[split].column_names)})")
        for value in raw[split][column]:
            if isinstance(value, list):
                words = [str(w) for w in value]
            elif isinstance(value, str):
                words = [w for w, _, _ in split_words(re.sub(r"<br\s*/?>", " ", value))]
            else:
                continue
            yield [normalize_word(w, lowercase, zero_digits) for w in words]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlp_rnn.word_vectors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the text file to write (word2vec format)")
    parser.add_argument("--text", action="append", required=True, metavar="DATASET:SPLIT:COLUMN",
                        help="unlabelled text to learn from (repeatable)")
    parser.add_argument("--dim", type=int, default=100, help="vector size (the tagger's model.embedding_dim)")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--max-words", type=int, default=50000)
    parser.add_argument("--cased", action="store_true", help="keep case (the tagger's tokenizer.lowercase: false)")
    parser.add_argument("--keep-digits", action="store_true", help="the tagger's model.zero_digits: false")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        sentences = [s for spec in args.text for s in read_corpus(spec, not args.cased, not args.keep_digits)]
        words = sum(map(len, sentences))
        print(f"{words:,} words in {len(sentences):,} texts from {len(args.text)} sources", flush=True)
        vectors = ppmi_svd(sentences, args.dim, args.window, args.min_count, args.max_words)
        write_vectors(vectors, Path(args.out))
    except NlpRnnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(vectors.words):,} vectors of {args.dim} dimensions to {args.out} "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
