"""Tokenizers from the Hugging Face ``tokenizers`` library, trained on the training split only.

Special tokens come first so that ``<pad>`` is id 0, then ``<unk>``, ``<s>``, ``</s>``. Normalisation
(HTML line breaks, Unicode form, lowercasing) lives inside the tokenizer, so ``tokenizer.json`` alone
reproduces it at prediction time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from nlp_rnn.config import TokenizerConfig
from nlp_rnn.errors import NlpRnnError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]
EOS_SHOWN = "(end)"  # how plots name the end-of-sentence token
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def _normalizer(config: TokenizerConfig) -> normalizers.Normalizer:
    steps = []
    if config.strip_html:
        steps.append(normalizers.Replace(Regex(r"(\s*<br\s*/?>\s*)+"), " "))
    if config.normalization != "none":
        steps.append(getattr(normalizers, config.normalization.upper())())
    if config.lowercase:
        steps.append(normalizers.Lowercase())
    if config.type != "char":  # a character model writes the spaces and newlines too
        steps.append(normalizers.Strip())
    return normalizers.Sequence(steps)


def build_tokenizer(config: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer of ``config.type`` and the trainer that fills its vocabulary."""
    common = {"vocab_size": config.vocab_size, "special_tokens": SPECIAL_TOKENS}
    if config.type == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(min_frequency=config.min_frequency, **common)
    elif config.type == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(min_frequency=config.min_frequency, **common)
    elif config.type == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(min_frequency=config.min_frequency, **common)
    elif config.type == "char":  # every character (spaces and newlines too) is a token: text generation
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(min_frequency=config.min_frequency, **common)
    elif config.type == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
    else:
        raise ValueError(f"unknown tokenizer type {config.type!r}")
    tokenizer.normalizer = _normalizer(config)
    return tokenizer, trainer


def train_tokenizer(texts: Iterable[str], config: TokenizerConfig) -> Tokenizer:
    tokenizer, trainer = build_tokenizer(config)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID], \
        "special tokens must come first"
    return tokenizer


def with_dropout(tokenizer: Tokenizer, dropout: float) -> Tokenizer:
    """A copy of a BPE ``tokenizer`` that skips each merge with probability ``dropout`` every time it encodes
    (BPE-dropout, Provilkov et al. 2020): the same vocabulary and the same text, segmented a little differently on
    every call, for training text only. ``tokenizer`` itself is left as it is (the one a run saves has no dropout);
    ``dropout`` 0 returns it unchanged."""
    if not dropout:
        return tokenizer
    spec = json.loads(tokenizer.to_str())
    if spec["model"].get("type") != "BPE":
        raise NlpRnnError(f"BPE-dropout needs a BPE tokenizer, not {spec['model'].get('type')}")
    spec["model"]["dropout"] = float(dropout)
    return Tokenizer.from_str(json.dumps(spec))


def union_vocabulary(tokenizers: Sequence[Tokenizer]) -> tuple[Tokenizer, list[list[int]]]:
    """One word-level tokenizer over every word of ``tokenizers`` (word-level, alike but for their vocabularies:
    the runs of an ensemble), and for each of them the map from the union's ids to its own (``<unk>`` for a word
    it does not have). The first keeps its ids, so its map is the identity; the others' new words follow."""
    vocabularies = [tokenizer.get_vocab() for tokenizer in tokenizers]
    words = sorted(vocabularies[0], key=vocabularies[0].__getitem__)
    known = set(words)
    for vocabulary in vocabularies[1:]:
        new = [word for word in sorted(vocabulary, key=vocabulary.__getitem__) if word not in known]
        words += new
        known.update(new)
    spec = json.loads(tokenizers[0].to_str())
    if spec["model"].get("type") != "WordLevel":
        raise NlpRnnError(f"a union of vocabularies needs word-level tokenizers, not {spec['model'].get('type')}")
    spec["model"]["vocab"] = {word: i for i, word in enumerate(words)}
    maps = [[vocabulary.get(word, UNK_ID) for word in words] for vocabulary in vocabularies]
    return Tokenizer.from_str(json.dumps(spec)), maps


def _head_tail(ids: list[int], max_length: int, head_fraction: float) -> list[int]:
    head = round(max_length * head_fraction)
    return ids[:head] + ids[len(ids) - (max_length - head) :]


# name -> (ids, max_length, head_fraction) -> kept ids, for ids longer than max_length; keyed by exactly
# config.choices(DataConfig, "truncation") (tests/test_tokenization.py checks).
TRUNCATIONS = {
    "head": lambda ids, max_length, head_fraction: ids[:max_length],
    "tail": lambda ids, max_length, head_fraction: ids[-max_length:],
    "head_tail": _head_tail,
}


def truncate(ids: list[int], max_length: int, strategy: str = "head", head_fraction: float = 0.25) -> list[int]:
    """Keep at most ``max_length`` ids: the start, the end, or both (Sun et al. 2019's head+tail)."""
    if strategy not in TRUNCATIONS:
        raise ValueError(f"unknown truncation {strategy!r}; available: {', '.join(TRUNCATIONS)}")
    if len(ids) <= max_length:
        return ids
    return TRUNCATIONS[strategy](ids, max_length, head_fraction)


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, strategy: str = "head",
                 head_fraction: float = 0.25) -> list[list[int]]:
    """Batch-encode and truncate; no special tokens are added."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [truncate(e.ids, max_length, strategy, head_fraction) for e in encodings]


def require_tokens(ids: Sequence[Sequence[int]]) -> None:
    """One clear error for the first text that encodes to nothing."""
    empty = [i for i, row in enumerate(ids) if not row]
    if empty:
        raise NlpRnnError(f"text {empty[0]} has no tokens (empty or whitespace only)")


def encode_sources(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Translation sources: ids cut to ``max_length`` tokens, then ``</s>``; and whether each was cut."""
    full = encode_texts(tokenizer, texts, 10**9, "head")
    require_tokens(full)
    return [ids[:max_length] + [EOS_ID] for ids in full], [len(ids) > max_length for ids in full]


def decode_ids(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """Token ids -> detokenized text, stopping at ``</s>`` and skipping special tokens."""
    ids = list(ids)
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return tokenizer.decode(ids, skip_special_tokens=True)


def subword_words(tokens: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Subword tokens grouped into the words they spell: (the words, each word's token positions). With
    Metaspace's "▁" word marks a piece without one continues the word before it; special tokens stand alone
    (``</s>`` shown as "(end)"); tokens without word marks are words already."""
    if not any(t.startswith("\u2581") for t in tokens):
        return [EOS_SHOWN if t == EOS else t for t in tokens], [[i] for i in range(len(tokens))]
    words: list[str] = []
    groups: list[list[int]] = []
    for index, token in enumerate(tokens):
        if token in SPECIAL_TOKENS:
            words.append(EOS_SHOWN if token == EOS else token)
            groups.append([index])
        elif token.startswith("\u2581") or not groups or tokens[groups[-1][-1]] in SPECIAL_TOKENS:
            words.append(token.lstrip("\u2581") or "\u2581")
            groups.append([index])
        else:
            words[-1] += token
            groups[-1].append(index)
    return words, groups
