"""Tokenizers: special ids, save/reload, normalisation inside the tokenizer, truncation, BPE-dropout."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from nlp_rnn.config import DataConfig, TokenizerConfig, choices
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.tokenization import (
    PAD_ID,
    SPECIAL_TOKENS,
    TRUNCATIONS,
    encode_texts,
    train_tokenizer,
    truncate,
    with_dropout,
)

TYPES = list(choices(TokenizerConfig, "type"))  # every tokenizer the config accepts builds and trains
CORPUS = [
    "A wonderful film with a great cast.<br /><br />I loved every minute of it.",
    "The plot was thin and the acting was worse. A waste of time.",
    "Great music, great photography, a truly great film!",
    "I would not watch this movie again; the ending was terrible.",
    "One of the best films of the year.<br />Highly recommended.",
    "Boring, slow and far too long. The cast deserved better.",
    "The director has made a funny, warm and clever movie.",
    "Terrible dialogue, wooden acting, and a plot full of holes.",
] * 3
UNSEEN = "An unexpectedly wonderful zyxwv movie, with great acting!"


def make_tokenizer(kind: str, **overrides) -> Tokenizer:
    options = {"type": kind, "vocab_size": 120, "min_frequency": 1} | overrides
    return train_tokenizer(CORPUS, TokenizerConfig(**options))


@pytest.fixture(scope="module", params=TYPES)
def tokenizer(request) -> Tokenizer:
    return make_tokenizer(request.param)


def test_special_tokens_come_first(tokenizer):
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tokenizer.token_to_id("<pad>") == PAD_ID
    assert 8 < tokenizer.get_vocab_size() <= 120


def test_encoding_never_adds_specials_or_padding(tokenizer):
    ids = encode_texts(tokenizer, [CORPUS[0], UNSEEN], max_length=1000)
    assert all(row for row in ids)
    assert all(i not in (0, 2, 3) for row in ids for i in row)


def test_save_and_reload_give_identical_ids(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    reloaded = Tokenizer.from_file(str(path))
    texts = [*CORPUS[:8], UNSEEN, "WITH CAPITALS<br/>and tags"]
    assert encode_texts(reloaded, texts, 1000) == encode_texts(tokenizer, texts, 1000)
    assert reloaded.get_vocab() == tokenizer.get_vocab()


@pytest.mark.parametrize("kind", TYPES)
def test_html_line_breaks_are_normalised_away(kind):
    tokenizer = make_tokenizer(kind)
    assert "<" not in tokenizer.normalizer.normalize_str("good<br />film<br/>and<br>more")
    assert tokenizer.encode("a great film.<br />loved it").ids == tokenizer.encode("a great film. loved it").ids
    kept = make_tokenizer(kind, strip_html=False)
    assert "<br />" in kept.normalizer.normalize_str("good<br />film")


@pytest.mark.parametrize("kind", TYPES)
def test_lowercase(kind):
    tokenizer = make_tokenizer(kind)
    assert tokenizer.normalizer.normalize_str("A GREAT Film") == "a great film"
    assert tokenizer.encode("A GREAT Film").ids == tokenizer.encode("a great film").ids
    cased = make_tokenizer(kind, lowercase=False)
    assert cased.normalizer.normalize_str("A GREAT Film") == "A GREAT Film"
    assert cased.encode("A GREAT Film").ids != cased.encode("a great film").ids


def test_word_tokenizer_maps_unseen_words_to_unk():
    tokenizer = make_tokenizer("word")
    assert tokenizer.encode("zyxwv").ids == [tokenizer.token_to_id("<unk>")]
    assert tokenizer.encode("great film").tokens == ["great", "film"]


# --- truncation ---------------------------------------------------------------------------------------


def test_truncate_examples():
    ids = list(range(10))
    assert truncate(ids, 4, "head") == [0, 1, 2, 3]
    assert truncate(ids, 4, "tail") == [6, 7, 8, 9]
    assert truncate(ids, 4, "head_tail", 0.25) == [0, 7, 8, 9]
    assert truncate(ids, 4, "head_tail", 0.5) == [0, 1, 8, 9]
    assert truncate(ids, 10, "head_tail") == ids


@given(st.integers(0, 80), st.integers(1, 40), st.sampled_from(choices(DataConfig, "truncation")),
       st.floats(0.0, 1.0))
@settings(max_examples=200, deadline=None)
def test_truncate_keeps_a_head_and_a_tail_within_max_length(length, max_length, strategy, head_fraction):
    ids = list(range(100, 100 + length))  # distinct, so positions can be read back from values
    kept = truncate(ids, max_length, strategy, head_fraction)
    assert len(kept) == min(length, max_length)
    if length <= max_length:
        assert kept == ids
        return
    head = {"head": max_length, "tail": 0, "head_tail": round(max_length * head_fraction)}[strategy]
    assert kept[:head] == ids[:head]  # the first `head` ids ...
    assert kept[head:] == ids[length - (max_length - head) :]  # ... then the last ones, in order


def test_subword_words_merges_pieces_into_words():
    from nlp_rnn.tokenization import subword_words

    words, groups = subword_words(["\u2581Ein", "\u2581Mann", "\u2581spiel", "t", ".", "</s>"])
    assert words == ["Ein", "Mann", "spielt.", "(end)"] and groups == [[0], [1], [2, 3, 4], [5]]
    assert subword_words(["a", "man", "</s>"]) == (["a", "man", "(end)"], [[0], [1], [2]])  # word-level
    assert subword_words(["</s>", "t"])[0] == ["(end)", "t"]  # a piece never joins a special token


def test_the_truncations_are_exactly_the_configs_choices():
    """One list of names; an unknown strategy is refused, even for a text short enough to keep whole."""
    assert set(TRUNCATIONS) == set(choices(DataConfig, "truncation"))
    with pytest.raises(ValueError, match="unknown truncation 'middle'.*head_tail"):
        truncate([1, 2], 4, "middle")


def test_union_vocabulary_keeps_the_first_ids_and_maps_each_to_its_own():
    from nlp_rnn.tokenization import UNK_ID, union_vocabulary

    first = make_tokenizer("word", vocab_size=40)
    second = train_tokenizer(["zyxwv film qwert"] * 3, TokenizerConfig(type="word", vocab_size=40, min_frequency=1))
    union, (first_map, second_map) = union_vocabulary([first, second])
    vocab = union.get_vocab()
    known = len(first.get_vocab())
    assert all(vocab[word] == i for word, i in first.get_vocab().items()) and len(vocab) == known + 2  # zyxwv, qwert
    assert first_map == list(range(known)) + [UNK_ID, UNK_ID]
    for word in ("zyxwv", "film", "great"):
        assert second_map[vocab[word]] == second.get_vocab().get(word, UNK_ID)
    assert union.encode("zyxwv film").ids == [vocab["zyxwv"], vocab["film"]]  # the first's normalizer, new words


def test_union_vocabulary_needs_word_level_tokenizers():
    from nlp_rnn.errors import NlpRnnError
    from nlp_rnn.tokenization import union_vocabulary

    with pytest.raises(NlpRnnError, match="word-level"):
        union_vocabulary([make_tokenizer("bpe"), make_tokenizer("bpe")])


def test_bpe_dropout_segments_differently_each_time_and_decodes_to_the_same_text():
    tokenizer = make_tokenizer("bpe", vocab_size=200)
    dropped = with_dropout(tokenizer, 0.3)
    text = "A wonderful film with a great cast, truly great music."
    plain = tokenizer.encode(text)
    draws = [dropped.encode(text) for _ in range(20)]
    assert len({tuple(d.ids) for d in draws}) > 1
    assert all(len(d.ids) >= len(plain.ids) for d in draws)  # dropout only skips merges: never fewer pieces
    assert {tokenizer.decode(d.ids) for d in draws} == {tokenizer.decode(plain.ids)}
    assert json.loads(tokenizer.to_str())["model"]["dropout"] is None  # the tokenizer a run saves: untouched
    assert dropped.get_vocab() == tokenizer.get_vocab()


def test_bpe_dropout_zero_is_the_tokenizer_itself_and_other_types_refuse_it():
    tokenizer = make_tokenizer("bpe")
    assert with_dropout(tokenizer, 0.0) is tokenizer
    with pytest.raises(NlpRnnError, match="needs a BPE tokenizer, not WordPiece"):
        with_dropout(make_tokenizer("wordpiece"), 0.1)
