"""Tokens -> one tag each: the BiLSTM-CRF sequence tagger (``task: tagging``; named entities, POS, chunks).

Data: a column of token lists and a column of tag lists (``data.tokens_column``, ``data.tags_column``); tags are a
``ClassLabel`` sequence (CoNLL-2003 on the hub) or plain strings / integers, named from the training split. Words
go through a word-level ``tokenizers`` vocabulary (or a subword one: a word's tag is scored at its first piece)
and a character vocabulary (case kept) for the character CNN. Entity-level precision / recall / F1 are counted as
CoNLL's ``conlleval`` does, by ``seqeval``; tag sets that are not IOB (POS) are scored per token.

Raw text (``nlp-rnn predict``, ``load(run).tag``, the demo) is cut into tokens by :func:`split_words`, a simple
rule close to CoNLL's tokenization: runs of letters and digits, joined by inner hyphens, periods, commas, slashes
or ampersands (``U.S.``, ``1,000``, ``Hewlett-Packard``, ``AT&T``); common abbreviations keep their period
(``Mr.``, ``Corp.``, ``Jan.``, an initial before a capitalised word: ``J. Smith``); ``'s`` and ``n't`` split off;
every other visible character is a token of its own; control characters count as spaces.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import datasets
import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
from torch import nn
from torch.utils.data import Dataset

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import BucketBatchSampler
from nlp_rnn.config import Config, DataConfig, _bounded, _choice
from nlp_rnn.data import DataError
from nlp_rnn.encoded import IDS, LENGTH, encode_split
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import autocast
from nlp_rnn.tagger import SequenceTagger, TagBatch, TaggerEnsemble
from nlp_rnn.tasks import register_task
from nlp_rnn.tasks.base import Task, TrainingData, check_cell
from nlp_rnn.tokenization import PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID, build_tokenizer, union_vocabulary

log = logging.getLogger(__name__)

CHAR_TOKENIZER_FILE = "tokenizer.chars.json"  # the character vocabulary, beside tokenizer.json (the words)


@dataclass(frozen=True)
class TaggingDataConfig(DataConfig):
    """``data:`` of a tagging config: the columns of token lists and of tag lists."""

    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"  # CoNLL-2003 also has pos_tags and chunk_tags


@dataclass(frozen=True)
class TaggerConfig:
    """Word embedding [+ character CNN] -> recurrent encoder -> dropout -> linear -> CRF or softmax."""

    cell: str = "lstm"  # any registered cell of the shared recurrent encoder
    embedding_dim: int = _bounded(100, 1)
    char_features: bool = True  # a character CNN per word (Ma & Hovy 2016), concatenated with the word embedding
    char_embedding_dim: int = _bounded(30, 1)
    char_filters: int = _bounded(50, 1)
    char_kernel_size: int = _bounded(3, 1)
    max_word_length: int = _bounded(25, 1)  # characters kept per token for the CNN
    hidden_size: int = _bounded(200, 1)  # per direction
    num_layers: int = _bounded(1, 1)
    bidirectional: bool = True
    dropout: float = _bounded(0.5, 0.0, 0.99)  # on the encoder's outputs and between stacked layers
    embedding_dropout: float = _bounded(0.5, 0.0, 0.99)  # on the [word; characters] input
    word_dropout: float = _bounded(0.05, 0.0, 0.99)  # training: a word is read as <unk> (learns to use context)
    output: str = _choice("crf", "crf", "softmax")
    iob_constraints: bool = True  # decoding: no I-X unless after B-X or I-X (IOB2 tag sets only)
    zero_digits: bool = True  # the word vocabulary reads every digit as 0 ("1996" and "1997" share a vector)
    # Pretrained word vectors (a GloVe / word2vec / fastText text file: "word v1 ... vd" per line): they initialise
    # the embedding, and up to max_vector_words of their words join the vocabulary so unseen words keep meaning.
    word_vectors: str | None = None
    max_vector_words: int = _bounded(50000, 0)
    packed: str = _choice("auto", "auto", "always", "never")


class TaggedToken(TypedDict):
    text: str
    start: int  # character offsets into the input
    end: int
    tag: str
    score: float  # the tag's probability (CRF marginal or softmax)


class Entity(TypedDict):
    text: str
    type: str
    start: int
    end: int
    score: float  # the mean probability of its tags


class Tagged(TypedDict):
    text: str
    tokens: list[str]
    spans: list[tuple[int, int]]
    tags: list[str]
    scores: list[float]
    entities: list[Entity]
    truncated: bool  # the text had more than data.max_length tokens; the rest was not tagged


# -- raw text -> tokens ---------------------------------------------------------------------------------------

_ABBREVIATIONS = ("Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Mt|Ft|Gen|Gov|Sen|Rep|Rev|Col|Lt|Sgt|Corp|Inc|Ltd|Co|Bros|Jan|Feb|"
                  "Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|vs|No")
_WORD = re.compile(r"[^\W_]+(?:[-.,/&][^\W_]+)*(?=n't)|n't|'[sS]\b|(?:[^\W\d_]\.){2,}"
                   rf"|\b(?:{_ABBREVIATIONS})\.|\b[A-Z]\.(?=\s+[A-Z])|[^\W_]+(?:[-.,/&][^\W_]+)*|\S")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """``text`` -> (token, start, end) triples by the module's documented rule; offsets index into ``text``."""
    visible = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(visible)]


# -- tag sets -------------------------------------------------------------------------------------------------

def is_iob(names: Sequence[str]) -> bool:
    """Whether every tag is ``O``, ``B-X`` or ``I-X`` (entity spans); else tags are scored per token."""
    return any(n != "O" for n in names) and all(n == "O" or n[:2] in ("B-", "I-") and len(n) > 2 for n in names)


def iob_allowed(names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed transitions (tags, tags), allowed first tags (tags,)) for IOB2: ``I-X`` only after ``B-X``/``I-X``."""
    allowed = torch.ones(len(names), len(names), dtype=torch.bool)
    start = torch.ones(len(names), dtype=torch.bool)
    for j, to in enumerate(names):
        if to.startswith("I-"):
            start[j] = False
            for i, previous in enumerate(names):
                allowed[i, j] = previous in (f"B-{to[2:]}", to)
    return allowed, start


def entities_of(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) token index spans of an IOB2 sequence, as conlleval reads them (seqeval)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return get_entities(list(tags))


# -- encoded data ---------------------------------------------------------------------------------------------

class TagDataset(Dataset):
    """Encoded sentences: token ids, character ids per token, tags per word, first token of each word."""

    def __init__(self, input_ids: Sequence[Sequence[int]], char_ids: Sequence[Sequence[Sequence[int]]],
                 tags: Sequence[Sequence[int]] | None, word_starts: Sequence[Sequence[int]] | None = None,
                 lengths: Sequence[int] | None = None) -> None:
        self.input_ids = input_ids  # lists, or the columns of a cached Arrow split (nlp_rnn.encoded)
        self.char_ids = char_ids
        self.tags = tags
        self.word_starts = word_starts  # None: one token per word
        self.row_lengths = lengths  # the split's length column; None: counted from input_ids

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        item = {"input_ids": self.input_ids[index], "char_ids": self.char_ids[index]}
        if self.tags is not None:
            item["tags"] = self.tags[index]
        if self.word_starts is not None:
            item["word_starts"] = self.word_starts[index]
        return item

    def lengths(self) -> list[int]:
        if self.row_lengths is not None:
            return self.row_lengths.tolist() if hasattr(self.row_lengths, "tolist") else list(self.row_lengths)
        return [len(ids) for ids in self.input_ids]

    def num_words(self) -> int:
        if self.word_starts is not None:
            return sum(map(len, self.word_starts))
        return sum(self.lengths())


class TagCollator:
    """Pad ``{"input_ids", "char_ids", "tags", "word_starts"}`` examples into a :class:`TagBatch`."""

    def __call__(self, examples: list[dict]) -> TagBatch:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples], dtype=torch.long)
        length = int(lengths.max())
        chars = max((len(c) for e in examples for c in e["char_ids"]), default=1)
        input_ids = torch.full((len(examples), length), PAD_ID, dtype=torch.long)
        char_ids = torch.zeros(len(examples), length, max(chars, 1), dtype=torch.long)
        for row, example in enumerate(examples):
            input_ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
            for position, word in enumerate(example["char_ids"]):
                char_ids[row, position, : len(word)] = torch.tensor(word)
        mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)  # (batch, len)
        word_starts = word_mask = None
        words = [len(e.get("word_starts", e["input_ids"])) for e in examples]
        if "word_starts" in examples[0]:
            word_starts = torch.zeros(len(examples), max(words), dtype=torch.long)
            for row, example in enumerate(examples):
                word_starts[row, : words[row]] = torch.tensor(example["word_starts"])
            word_mask = torch.arange(max(words)).unsqueeze(0) < torch.tensor(words).unsqueeze(1)
        tags = None
        if "tags" in examples[0]:
            tags = torch.zeros(len(examples), max(words), dtype=torch.long)
            for row, example in enumerate(examples):
                tags[row, : words[row]] = torch.tensor(example["tags"])
        return TagBatch(input_ids, char_ids, lengths, mask, tags, word_starts, word_mask)


# -- tokenizers -----------------------------------------------------------------------------------------------

def _word_normalizer(tokenizer: Tokenizer, zero_digits: bool) -> None:
    if zero_digits:
        tokenizer.normalizer = normalizers.Sequence([tokenizer.normalizer, normalizers.Replace(Regex(r"\d"), "0")])


def train_word_tokenizer(words: Sequence[Sequence[str]], config: Config,
                         extra_words: Sequence[str] = ()) -> Tokenizer:
    """The word vocabulary over pre-split tokens (a word-level tokenizer keeps each token whole), trained on the
    training split; ``extra_words`` (pretrained vectors' words) join it after the training words."""
    tokenizer, trainer = build_tokenizer(config.tokenizer)
    _word_normalizer(tokenizer, config.model.zero_digits)
    if config.tokenizer.type != "word":
        tokenizer.train_from_iterator((" ".join(sentence) for sentence in words), trainer=trainer)
        return tokenizer
    normalize = tokenizer.normalizer.normalize_str
    counts = Counter(normalize(word) for sentence in words for word in sentence)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= config.tokenizer.vocab_size:
            break
        if count >= config.tokenizer.min_frequency and word and word not in vocab:
            vocab[word] = len(vocab)
    for word in extra_words:
        if word and word not in vocab:
            vocab[word] = len(vocab)
    word_tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    word_tokenizer.normalizer = tokenizer.normalizer
    word_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return word_tokenizer


def train_char_tokenizer(words: Sequence[Sequence[str]], config: Config) -> Tokenizer:
    """Every character of the training words (case kept, Unicode-normalised as the words are)."""
    normalization = config.tokenizer.normalization
    normalizer = getattr(normalizers, normalization.upper())() if normalization != "none" else None
    counts = Counter(c for sentence in words for word in sentence
                     for c in (normalizer.normalize_str(word) if normalizer else word))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        vocab.setdefault(char, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    return tokenizer


def _normalizer_spec(tokenizer: Tokenizer) -> str:
    return json.dumps(json.loads(tokenizer.to_str()).get("normalizer"), sort_keys=True)


# -- the task -------------------------------------------------------------------------------------------------

@dataclass
class _Encoded:
    ids: list[list[int]]
    chars: list[list[list[int]]]
    starts: list[list[int]] | None


def encode_words(sentences: Sequence[Sequence[str]], tokenizers: Sequence[Tokenizer], config: Config) -> _Encoded:
    """Token ids, character ids per token and (subword tokenizers) each word's first token."""
    word_tokenizer, char_tokenizer = tokenizers
    limit = config.model.max_word_length
    char_vocab = char_tokenizer.get_vocab()
    normalize_chars = char_tokenizer.normalizer.normalize_str if char_tokenizer.normalizer else str
    subwords = config.tokenizer.type != "word"

    def char_ids(text: str) -> list[int]:
        return [char_vocab.get(c, UNK_ID) for c in normalize_chars(text)[:limit]] or [UNK_ID]

    encoded = _Encoded([], [], [] if subwords else None)
    if not subwords:
        vocab = word_tokenizer.get_vocab()
        normalize = word_tokenizer.normalizer.normalize_str
        for sentence in sentences:
            encoded.ids.append([vocab.get(normalize(word), UNK_ID) for word in sentence])
            encoded.chars.append([char_ids(word) for word in sentence])
        return encoded
    for sentence, encoding in zip(sentences, word_tokenizer.encode_batch(
            [list(s) for s in sentences], is_pretokenized=True, add_special_tokens=False), strict=True):
        ids, chars, starts = [], [], []
        pieces: dict[int, list[int]] = {}
        for position, word_index in enumerate(encoding.word_ids):
            if word_index is not None:
                pieces.setdefault(word_index, []).append(position)
        for word_index, word in enumerate(sentence):
            starts.append(len(ids))
            for position in pieces.get(word_index) or [None]:  # a word normalised to nothing reads as <unk>
                if position is None:
                    ids.append(UNK_ID)
                    chars.append(char_ids(word))
                else:
                    start, end = encoding.offsets[position]
                    ids.append(encoding.ids[position])
                    chars.append(char_ids(word[start:end] or word))
        encoded.ids.append(ids)
        encoded.chars.append(chars)
        encoded.starts.append(starts)
    return encoded


def _encode_batch(batch: dict[str, list], indices: list[int], tokenizers: Sequence[Tokenizer], config: Config,
                  names: list[str], as_names: list[str] | None, training: bool, where: str) -> dict[str, list]:
    """Rows -> token ids, character ids, tag ids, word starts (subwords) and lengths. Empty sentences, and in
    training those longer than ``data.max_length`` tokens, are left out; a row whose tokens and tags are not lists
    of one length, or with a tag the model does not have, is an error naming it."""
    data = config.data
    index = {name: i for i, name in enumerate(names)}
    sentences, tags = [], []
    for row, tokens, row_tags in zip(indices, batch[data.tokens_column], batch[data.tags_column], strict=True):
        if not isinstance(tokens, list) or not isinstance(row_tags, list):
            raise DataError(f"{where} row {row}: {data.tokens_column!r} and {data.tags_column!r} must be lists "
                            f"(got {type(tokens).__name__} and {type(row_tags).__name__})")
        if len(tokens) != len(row_tags):
            raise DataError(f"{where} row {row}: {len(tokens)} tokens but {len(row_tags)} tags "
                            f"(tokens begin {' '.join(map(str, tokens[:6]))!r})")
        if not tokens or (training and len(tokens) > data.max_length):
            continue
        ids = []
        for tag in row_tags:
            name = as_names[tag] if as_names is not None and isinstance(tag, int) and tag >= 0 else str(tag)
            if name not in index:
                raise DataError(f"{where} row {row}: tag {name!r} is not one of the model's tags "
                                f"({', '.join(names)})")
            ids.append(index[name])
        sentences.append([str(token) for token in tokens])
        tags.append(ids)
    encoded = encode_words(sentences, tokenizers, config)
    columns = {"input_ids": encoded.ids, "char_ids": encoded.chars, "tags": tags,
               "length": [len(ids) for ids in encoded.ids]}
    if encoded.starts is not None:
        columns["word_starts"] = encoded.starts
    return columns


@register_task("tagging")
class TaggingTask(Task):
    """Pre-split tokens -> one tag per token (IOB2 entities, or any tag set), BiLSTM + CRF or softmax."""

    model_config = TaggerConfig
    data_config = TaggingDataConfig
    metrics = ("f1", "accuracy", "loss")
    unit = "sentences"
    logged = ("loss", "accuracy", "precision", "recall", "f1")
    kept = ("loss", "accuracy", "precision", "recall", "f1", "per_type", "scheme", "num_examples")
    card_hint = "Test scores: `nlp-rnn evaluate <this folder> --split test` on this folder's own weights."
    onnx_runner = "tagger"
    PER_TYPE_PLOT = "per_type.png"  # evaluation/SPLIT/: precision, recall and F1 per entity type
    CONFUSION_PLOT = ckpt.RunFolder.CONFUSION_MATRIX  # evaluation/SPLIT/: entity types, exact spans

    @classmethod
    def check_config(cls, config: Config, errors: list[str]) -> None:
        check_cell(config, "cell", errors)  # model.word_vectors is read (and checked) when training starts only:
        # a trained model's config.yaml still names it, and loading the model needs no vectors

    @classmethod
    def columns(cls, data: TaggingDataConfig) -> tuple[str, ...]:
        return data.tokens_column, data.tags_column

    @classmethod
    def keep_row(cls, row: dict[str, Any], columns: tuple[str, ...]) -> bool:
        return all(row[column] is not None for column in columns)  # lengths and tags are checked when encoding

    @classmethod
    def tokenizer_files(cls, config: Config) -> list[str]:
        return [ckpt.TOKENIZER_FILE, CHAR_TOKENIZER_FILE]

    @classmethod
    def for_training(cls, config: Config, tokenizers: list[Tokenizer] | None = None) -> tuple[Task, TrainingData]:
        from nlp_rnn.data import load_splits

        splits = load_splits(config.data, cls)
        names = tag_names(splits.train, config.data.tags_column)
        vectors = None
        if tokenizers is None:
            vectors = _read_vectors(config) if config.model.word_vectors else None
            tokenizers = cls.train_tokenizers(config, splits.train, vectors)
        task = cls(config, tokenizers, cls.metadata_from(config, tokenizers, names))
        task.pretrained = vectors
        return task, TrainingData(task.encode_training(splits.train), task.encode(splits.validation))

    @classmethod
    def train_tokenizers(cls, config: Config, train: datasets.Dataset, vectors=None) -> list[Tokenizer]:
        words = train[config.data.tokens_column]
        extra = list(vectors.words[: config.model.max_vector_words]) if vectors is not None else []
        return [train_word_tokenizer(words, config, extra), train_char_tokenizer(words, config)]

    @classmethod
    def metadata_from(cls, config: Config, tokenizers: list[Tokenizer], label_names: list[str]) -> dict[str, Any]:
        return {"task": cls.name, "labels": list(label_names), "vocab_size": tokenizers[0].get_vocab_size(),
                "char_vocab_size": tokenizers[1].get_vocab_size()}

    def vocabulary_keys(self) -> list[tuple[str, int]]:
        return [("vocab_size", 0), ("char_vocab_size", 1)]

    pretrained = None  # word vectors read for a fresh training run (build_model copies them in)

    @property
    def tag_names(self) -> list[str]:
        labels = self.meta.get("labels")
        if not labels:
            raise NlpRnnError(f"no tag names in the {ckpt.WEIGHTS_FILE} metadata")
        return list(labels)

    @property
    def scheme(self) -> str:
        """``iob2`` (entities, scored by span) or ``token`` (POS and other tag sets, scored per token)."""
        return "iob2" if is_iob(self.tag_names) else "token"

    def constraints(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.scheme == "iob2" and self.config.model.iob_constraints:
            return iob_allowed(self.tag_names)
        return None, None

    # -- encoding -------------------------------------------------------------------------------------------

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> _Encoded:
        """Token ids, character ids per token and (subword tokenizers) each word's first token."""
        return encode_words(sentences, self.tokenizers, self.config)

    def _encode(self, split: datasets.Dataset, training: bool) -> TagDataset:
        """Checked and encoded once per split, tokenizers and options (:mod:`nlp_rnn.encoded`); a bad row is an
        error naming it."""
        data = self.config.data
        where = f"{data.source} [{split.split or 'split'}]"
        feature = getattr(split.features[data.tags_column], "feature", None)
        as_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        subwords = self.config.tokenizer.type != "word"
        columns = {"input_ids": IDS, "char_ids": datasets.Sequence(IDS), "tags": IDS, "length": LENGTH}
        if subwords:
            columns["word_starts"] = IDS
        encode = partial(_encode_batch, tokenizers=self.tokenizers, config=self.config, names=self.tag_names,
                         as_names=as_names, training=training, where=where)
        encoded = encode_split(split, encode, datasets.Features(columns), data, self.tokenizers,
                               {"training": training, "tags": self.tag_names,
                                "max_word_length": self.config.model.max_word_length}, with_indices=True)
        if len(encoded) < len(split):
            log.info("%s: left out %d of %d sentences (empty%s)", where, len(split) - len(encoded), len(split),
                     f", or longer than {data.max_length} tokens" if training else "")
        if not len(encoded):
            raise DataError(f"{where}: no sentences with tokens")
        return TagDataset(encoded.column("input_ids"), encoded.column("char_ids"), encoded.column("tags"),
                          encoded.column("word_starts") if subwords else None, encoded.ints("length"))

    def encode_training(self, split: datasets.Dataset) -> TagDataset:
        return self._encode(split, training=True)

    def encode(self, split: datasets.Dataset) -> TagDataset:
        return self._encode(split, training=False)

    @property
    def collate(self) -> TagCollator:
        return TagCollator()

    # -- model ----------------------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        model = SequenceTagger(self.config.model, self.tokenizers[0].get_vocab_size(),
                               self.tokenizers[1].get_vocab_size(), len(self.tag_names), PAD_ID, UNK_ID)
        if self.pretrained is not None:
            self.pretrained.copy_into(model.word_embedding, self.tokenizers[0])
        return model

    def forward(self, model: nn.Module, batch: TagBatch, step: int, total_steps: int) -> tuple[torch.Tensor, int, int]:
        emissions, loss = model(batch, targets=batch.tags)
        mask = batch.tag_mask
        correct = int(((emissions.argmax(-1) == batch.tags) & mask).sum())
        return loss, correct, int(mask.sum())

    @torch.no_grad()
    def tag_dataset(self, model: nn.Module, data: TagDataset, batch_size: int,
                    device: torch.device) -> tuple[list[list[int]], list[list[float]], float]:
        """Every sentence's tag ids and their probabilities (dataset order), and the summed loss over words when
        the data has tags. Batches are sorted by length."""
        was_training = model.training
        model.eval()
        allowed, allowed_start = self.constraints()
        paths: list[list[int]] = [[] for _ in range(len(data))]
        probabilities: list[list[float]] = [[] for _ in range(len(data))]
        total_loss = 0.0
        collate = self.collate
        for indices in BucketBatchSampler(data.lengths(), batch_size, shuffle=False):
            batch = collate([data[i] for i in indices]).to(device)
            with autocast(device, self.config.train.amp):
                emissions, loss = model(batch, targets=batch.tags)
            if loss is not None:
                total_loss += float(loss) * int(batch.tag_mask.sum())
            found, scores = model.decode(emissions, batch.tag_mask, allowed, allowed_start)
            for i, path, score in zip(indices, found, scores, strict=True):
                paths[i], probabilities[i] = path, score
        model.train(was_training)
        return paths, probabilities, total_loss

    def evaluate(self, model: nn.Module, data: TagDataset, device: torch.device, batch_size: int,
                 beam_size: int | None = None) -> dict[str, Any]:
        """Loss per word, token accuracy, entity precision / recall / F1 (seqeval, conlleval's counting) overall
        and per type, the entity-type confusion matrix, sentences/s."""
        started = time.perf_counter()
        paths, _, total_loss = self.tag_dataset(model, data, batch_size, device)
        seconds = time.perf_counter() - started
        names = self.tag_names
        gold = [[names[t] for t in row] for row in data.tags]
        predicted = [[names[t] for t in row] for row in paths]
        words = sum(map(len, gold))
        report = score_tags(gold, predicted, self.scheme)
        report.update(loss=total_loss / max(1, words), num_examples=len(data), num_words=words,
                      sentences_per_second=len(data) / max(seconds, 1e-9))
        return report

    # -- a trained model ------------------------------------------------------------------------------------

    def predictor(self, model: nn.Module, run_dir: Path, explain_model: nn.Module | None = None):
        return TaggerPredictor(self, model, run_dir)

    @classmethod
    def ensemble(cls, members: list[tuple[TaggingTask, nn.Module]]) -> tuple[TaggingTask, nn.Module]:
        """Taggers of one tag set that split words alike (:class:`TaggerEnsemble`); their vocabularies may differ
        (word-level tokenizers: the ensemble reads the union). The first run's config is the ensemble's."""
        first = members[0][0]
        problems = []
        for task, _ in members[1:]:
            name = task.config.data.source
            if task.tag_names != first.tag_names:
                problems.append(f"tags {task.tag_names} of a {name} run differ from {first.tag_names}")
            for what, mine, theirs in (
                    ("tokenizer.type", first.config.tokenizer.type, task.config.tokenizer.type),
                    ("model.max_word_length", first.config.model.max_word_length, task.config.model.max_word_length),
                    ("word normalization", _normalizer_spec(first.tokenizers[0]), _normalizer_spec(task.tokenizers[0])),
                    ("character normalization", _normalizer_spec(first.tokenizers[1]),
                     _normalizer_spec(task.tokenizers[1]))):
                if mine != theirs:
                    problems.append(f"{what} {theirs} differs from {mine}")
            if first.config.tokenizer.type != "word" and task.tokenizers[0].to_str() != first.tokenizers[0].to_str():
                problems.append("subword vocabularies differ (an ensemble of subword taggers needs one tokenizer)")
        if problems:
            raise NlpRnnError("these runs cannot form an ensemble: " + "; ".join(dict.fromkeys(problems)))
        word_tokenizer, word_maps = (union_vocabulary([t.tokenizers[0] for t, _ in members])
                                     if first.config.tokenizer.type == "word" else
                                     (first.tokenizers[0], [list(range(first.tokenizers[0].get_vocab_size()))]
                                      * len(members)))
        char_tokenizer, char_maps = union_vocabulary([t.tokenizers[1] for t, _ in members])
        task = cls(first.config, [word_tokenizer, char_tokenizer],
                   {**first.meta, "vocab_size": word_tokenizer.get_vocab_size(),
                    "char_vocab_size": char_tokenizer.get_vocab_size(), "ensemble": len(members)})
        model = TaggerEnsemble([m for _, m in members], torch.tensor(word_maps), torch.tensor(char_maps))
        return task, model

    def predict(self, predictor, texts: list[str], beam_size: int | None = None, n_best: int = 1) -> list[dict]:
        return predictor.tag(texts)

    def prediction_line(self, result: dict) -> str:
        tagged = " ".join(f"{token}/{tag}" for token, tag in zip(result["tokens"], result["tags"], strict=True))
        entities = "; ".join(f"{e['type']} {e['text']!r} {e['start']}-{e['end']}" for e in result["entities"])
        return f"{tagged}\t{entities or '(no entities)'}" + ("\t(truncated)" if result["truncated"] else "")

    def write_evaluation(self, report: dict[str, Any], data: Any, out: Path) -> list[str]:
        from nlp_rnn.plots import plot_class_scores, plot_confusion_matrix

        ckpt.write_json(out / ckpt.METRICS_FILE, report)
        lines = [f"{report['scheme']} F1 {report['f1']:.4f} (precision {report['precision']:.4f}, recall "
                 f"{report['recall']:.4f}), token accuracy {report['accuracy']:.4f}, "
                 f"{report['sentences_per_second']:.0f} sentences/s"]
        lines += [f"  {name:>8}: precision {s['precision']:.4f} recall {s['recall']:.4f} f1 {s['f1']:.4f} "
                  f"support {s['support']}" for name, s in report["per_type"].items()]
        if report["per_type"]:
            plot_class_scores(report["per_type"], out / self.PER_TYPE_PLOT)
        if report.get("confusion_matrix"):
            labels = report["confusion_labels"]
            plot_confusion_matrix(report["confusion_matrix"], labels, out / self.CONFUSION_PLOT)
            lines.append(f"entity types (rows gold, columns predicted, exact spans; O = no such span) {labels}: "
                         f"{report['confusion_matrix']}")
        return lines

    def card(self, run: ckpt.RunFolder, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
        data, model, train = config["data"], config["model"], config["train"]
        direction = "bidirectional " if model["bidirectional"] else ""
        chars = (f" + character CNN ({model['char_filters']} filters, width {model['char_kernel_size']})"
                 if model["char_features"] else "")
        vectors = (f"; embedding initialised from `{Path(model['word_vectors']).name}`"
                   if model.get("word_vectors") else "")
        tags = ", ".join(f"`{name}`" for name in self.tag_names)
        scored = "entity spans, as conlleval counts them, via seqeval" if self.scheme == "iob2" else "per token"
        members = metrics.get("members") or []  # a packed ensemble's
        lines = [
            f"# {self.config.data.source} ({data['tags_column']}): {direction}{model['cell'].upper()}-"
            f"{model['output'].upper() if model['output'] == 'crf' else model['output']} tagger",
            "",
            f"- **Data**: `{self.config.data.source}` (tokens `{data['tokens_column']}`, tags "
            f"`{data['tags_column']}`: {tags}), reported on split `{data['test_split']}`.",
            f"- **Vocabulary**: {self.tokenizers[0].get_vocab_size():,} words "
            f"({config['tokenizer']['type']}-level{', lowercased' if config['tokenizer']['lowercase'] else ''}"
            f"{vectors}{', the union of the members' if members else ''}).",
            f"- **Model**: {f'{len(members)} runs (mean of their tag probabilities) of: ' if members else ''}"
            f"word embedding {model['embedding_dim']}{chars} -> {model['num_layers']} x {direction}"
            f"{model['cell']} {model['hidden_size']} -> linear -> {model['output']}; "
            f"{metrics.get('num_parameters', 0):,} parameters{' in all' if members else ''}.",
            f"- **Training**: AdamW lr {train['lr']}, {train['schedule']} schedule, batch {train['batch_size']}, "
            f"up to {train['epochs']} epochs, best {'epochs ' if members else 'epoch '}"
            f"{', '.join(str(m.get('best_epoch')) for m in members) if members else metrics.get('best_epoch')} "
            f"by validation {metrics.get('metric') or self.config.metric}.",
            f"- **Scores**: {self.scheme} precision / recall / F1 ({scored}).",
            "",
            "| split | sentences | precision | recall | F1 | token accuracy |",
            "|---|---|---|---|---|---|",
        ]
        validation = metrics.get("validation")
        if validation:
            count = f"{validation['num_examples']:,}" if "num_examples" in validation else ""
            lines.append(f"| validation (best epoch) | {count} | {validation['precision']:.4f} | "
                         f"{validation['recall']:.4f} | {validation['f1']:.4f} | {validation['accuracy']:.4f} |")
        for folder in sorted(run.evaluation().glob("*")):
            report = ckpt.read_json(folder / ckpt.METRICS_FILE)
            if report and "f1" in report:
                lines.append(f"| {folder.name} | {report['num_examples']:,} | {report['precision']:.4f} | "
                             f"{report['recall']:.4f} | {report['f1']:.4f} | {report['accuracy']:.4f} |")
        return lines

    def export_onnx(self, model: nn.Module, out: Path, opset: int) -> list[Path]:
        from nlp_rnn.onnx_graphs import export_tagger

        if self.config.tokenizer.type != "word":
            raise NlpRnnError(f"ONNX export of a tagger needs a word-level vocabulary (tokenizer.type word), not "
                              f"{self.config.tokenizer.type!r}: the ONNX runner does not split words into pieces")
        return export_tagger(model, out, opset)

    def onnx_manifest(self) -> dict[str, Any]:
        allowed, allowed_start = self.constraints()  # decoding's IOB2 masks, None when not constrained
        return {"tags": self.tag_names, "allowed": None if allowed is None else allowed.tolist(),
                "allowed_start": None if allowed_start is None else allowed_start.tolist()}


def tag_names(split: datasets.Dataset, column: str) -> list[str]:
    """The tag set: a ``ClassLabel`` sequence's names, else the training split's distinct values (``O`` first,
    then sorted)."""
    feature = getattr(split.features[column], "feature", None)
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    values = {str(tag) for row in split[column] if isinstance(row, list) for tag in row}
    if not values:
        raise DataError(f"column {column!r} holds no tags")
    return sorted(values, key=lambda name: (name != "O", name))


def score_tags(gold: list[list[str]], predicted: list[list[str]], scheme: str) -> dict[str, Any]:
    """Token accuracy, and precision / recall / F1 overall and per type: entity spans by seqeval (exact span and
    type, as conlleval) for ``iob2``, per tag for ``token``; plus the entity-type confusion matrix (iob2)."""
    words = sum(map(len, gold))
    correct = sum(g == p for gold_row, pred_row in zip(gold, predicted, strict=True)
                  for g, p in zip(gold_row, pred_row, strict=True))
    report: dict[str, Any] = {"scheme": scheme, "accuracy": correct / max(1, words)}
    if scheme == "iob2":
        from seqeval.metrics import classification_report

        table = classification_report(gold, predicted, output_dict=True, zero_division=0, mode=None)
        overall = table["micro avg"]
        report.update(precision=overall["precision"], recall=overall["recall"], f1=overall["f1-score"])
        report["per_type"] = {name: {"precision": s["precision"], "recall": s["recall"], "f1": s["f1-score"],
                                     "support": int(s["support"])}
                              for name, s in table.items() if not name.endswith(" avg")}
        labels, matrix = entity_confusion(gold, predicted)
        report.update(confusion_labels=labels, confusion_matrix=matrix)
        return report
    per_type = {}
    for name in sorted({t for row in gold for t in row} | {t for row in predicted for t in row}):
        pairs = [(g == name, p == name) for gr, pr in zip(gold, predicted, strict=True)
                 for g, p in zip(gr, pr, strict=True)]
        tp = sum(g and p for g, p in pairs)
        predicted_count, support = sum(p for _, p in pairs), sum(g for g, _ in pairs)
        precision, recall = tp / max(1, predicted_count), tp / max(1, support)
        per_type[name] = {"precision": precision, "recall": recall, "support": support,
                          "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}
    # every token gets exactly one tag, so micro precision = recall = F1 = accuracy
    report.update(precision=report["accuracy"], recall=report["accuracy"], f1=report["accuracy"], per_type=per_type)
    return report


def entity_confusion(gold: list[list[str]], predicted: list[list[str]]) -> tuple[list[str], list[list[int]]]:
    """Rows gold entity type, columns predicted type, for spans found exactly in both; a gold span the model did
    not find counts in column ``O``, a predicted span that is not gold in row ``O``."""
    types = sorted({t for row in gold for t, _, _ in entities_of(row)} |
                   {t for row in predicted for t, _, _ in entities_of(row)})
    labels = [*types, "O"]
    index = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for gold_row, pred_row in zip(gold, predicted, strict=True):
        gold_spans = {(s, e): t for t, s, e in entities_of(gold_row)}
        pred_spans = {(s, e): t for t, s, e in entities_of(pred_row)}
        for span, kind in gold_spans.items():
            matrix[index[kind]][index[pred_spans.get(span, "O")]] += 1
        for span, kind in pred_spans.items():
            if span not in gold_spans:
                matrix[index["O"]][index[kind]] += 1
    return labels, matrix


def _read_vectors(config: Config):
    from nlp_rnn.word_vectors import WordVectors

    word_tokenizer, _ = build_tokenizer(config.tokenizer)
    _word_normalizer(word_tokenizer, config.model.zero_digits)
    return WordVectors.read(Path(config.model.word_vectors).expanduser(), config.model.embedding_dim,
                            word_tokenizer.normalizer.normalize_str)


class TaggerPredictor:
    """A trained tagger with its tokenizers; ``tag(texts)`` for raw text, ``tag_tokens(sentences)`` for pre-split
    tokens. Thread-safe for concurrent calls (no module state is written)."""

    def __init__(self, task: TaggingTask, model: nn.Module, run_dir: Path) -> None:
        self.task = task
        self.config = task.config
        self.model = model.eval()
        self.run_dir = Path(run_dir)
        self.device = next(model.parameters()).device
        self.labels = task.tag_names

    def tag_tokens(self, sentences: list[list[str]], batch_size: int = 64) -> list[tuple[list[str], list[float]]]:
        """Each sentence's tags and their probabilities; a sentence of no tokens gets none."""
        kept = [i for i, s in enumerate(sentences) if s]
        results: list[tuple[list[str], list[float]]] = [([], []) for _ in sentences]
        if not kept:
            return results
        encoded = self.task.encode_words([sentences[i] for i in kept])
        data = TagDataset(encoded.ids, encoded.chars, None, encoded.starts)
        with torch.inference_mode():
            paths, probabilities, _ = self.task.tag_dataset(self.model, data, batch_size, self.device)
        for i, path, scores in zip(kept, paths, probabilities, strict=True):
            results[i] = ([self.labels[t] for t in path], scores)
        return results

    def tag(self, texts: list[str], batch_size: int = 64) -> list[Tagged]:
        """Raw texts -> tokens (:func:`split_words`), tags, probabilities and entities with character offsets.
        Texts longer than ``data.max_length`` tokens are tagged up to it (``truncated``, and a warning)."""
        if isinstance(texts, str):
            raise TypeError("tag takes a list of texts; wrap a single text in a list")
        limit = self.config.data.max_length
        split = [split_words(str(text)) for text in texts]
        cut = [len(words) > limit for words in split]
        if any(cut):
            log.warning("%d text(s) longer than %d tokens: only the first %d were tagged", sum(cut), limit, limit)
        split = [words[:limit] for words in split]
        found = self.tag_tokens([[w for w, _, _ in words] for words in split], batch_size)
        results = []
        for text, words, (tags, scores), truncated in zip(texts, split, found, cut, strict=True):
            text = str(text)
            entities = []
            if self.task.scheme == "iob2":
                tags = self._outside_unknown_symbols([w for w, _, _ in words], tags)
                for kind, first, last in entities_of(tags):
                    start, end = words[first][1], words[last][2]
                    entities.append(Entity(text=text[start:end], type=kind, start=start, end=end,
                                           score=sum(scores[first : last + 1]) / (last + 1 - first)))
            results.append(Tagged(text=text, tokens=[w for w, _, _ in words], spans=[(s, e) for _, s, e in words],
                                  tags=tags, scores=[float(s) for s in scores], entities=entities,
                                  truncated=truncated))
        return results

    predict = tag

    def _outside_unknown_symbols(self, tokens: list[str], tags: list[str]) -> list[str]:
        """Raw text may hold what training text never had (emoji, pictographs): a token with no letter or digit
        and no character the model knows is outside every entity (``O``), and an ``I-X`` after it becomes
        ``B-X``, so "Paris \U0001f3ac" is the entity "Paris"."""
        char_vocab = self.task.tokenizers[1].get_vocab()
        tags = list(tags)
        for i, token in enumerate(tokens):
            if not any(c.isalnum() or c in char_vocab for c in token):
                tags[i] = "O"
                if i + 1 < len(tags) and tags[i + 1].startswith("I-"):
                    tags[i + 1] = "B-" + tags[i + 1][2:]
        return tags
