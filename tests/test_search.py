"""Search: beam 1 equals greedy, a batch equals its sentences one by one, every decode ends, n-best is ranked."""

import math

import pytest
import torch

from nlp_rnn.batching import pad
from nlp_rnn.config import TranslatorConfig
from nlp_rnn.search import beam_search, decode_dataset, greedy_search, length_penalty, output_limits
from nlp_rnn.tokenization import BOS_ID, EOS_ID
from nlp_rnn.translator import Translator

SOURCES = [[5, 6, 7, 8, 9, EOS_ID], [10, 11, EOS_ID], [12, EOS_ID], [13, 14, 15, 16, EOS_ID]]


def model_of(attention="bahdanau", seed=0, eos_bias=0.0) -> Translator:
    torch.manual_seed(seed)
    config = TranslatorConfig(embedding_dim=12, hidden_size=10, decoder_hidden_size=20, attention_size=9,
                              attention=attention, dropout=0.0, embedding_dropout=0.0)
    model = Translator(config, 30, 25).eval()
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] += eos_bias  # make </s> likelier so hypotheses end at varied lengths
    return model


def padded(sources):
    src, lengths, _ = pad(sources, 0)
    return src, lengths


@pytest.mark.parametrize("attention", ["bahdanau", "luong_general"])
@pytest.mark.parametrize("eos_bias", [0.0, 2.5])
def test_beam_of_one_equals_greedy(attention, eos_bias):
    model = model_of(attention, eos_bias=eos_bias)
    src, lengths = padded(SOURCES)
    greedy = greedy_search(model, src, lengths)
    beam = beam_search(model, src, lengths, beam_size=1)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]


@pytest.mark.parametrize("beam_size", [1, 4])
@pytest.mark.parametrize("eos_bias", [0.0, 2.5])
def test_a_batch_gives_the_same_translations_as_its_sentences_one_by_one(beam_size, eos_bias):
    model = model_of(eos_bias=eos_bias)
    together = decode_dataset(model, SOURCES, 8, torch.device("cpu"), beam_size=beam_size, n_best=beam_size)
    for source, hypotheses in zip(SOURCES, together, strict=True):
        (alone,) = decode_dataset(model, [source], 1, torch.device("cpu"), beam_size=beam_size, n_best=beam_size)
        assert [h.tokens for h in hypotheses] == [h.tokens for h in alone]
        assert [h.score for h in hypotheses] == pytest.approx([h.score for h in alone], abs=1e-4)


def test_untrained_models_stop_at_the_length_limit():
    model = model_of(eos_bias=-50.0)  # never says </s>
    src, lengths = padded(SOURCES)
    limits = output_limits(lengths, 1.5, 256)
    assert limits == [math.ceil(1.5 * n) + 5 for n in (6, 3, 2, 5)]
    for hypothesis, limit in zip(greedy_search(model, src, lengths), limits, strict=True):
        assert len(hypothesis.tokens) == limit
    for hypotheses, limit in zip(beam_search(model, src, lengths, beam_size=3, n_best=3), limits, strict=True):
        assert len(hypotheses) == 3 and all(len(h.tokens) == limit for h in hypotheses)
    capped = greedy_search(model, src, lengths, max_length_ratio=10.0, max_output_length=7)
    assert all(len(h.tokens) == 7 for h in capped)


def test_nbest_is_ranked_by_the_length_normalised_score():
    model = model_of(eos_bias=2.5)
    src, lengths = padded(SOURCES)
    for alpha in (0.0, 1.0):
        for hypotheses in beam_search(model, src, lengths, beam_size=5, n_best=5, length_penalty_alpha=alpha):
            scores = [h.score for h in hypotheses]
            assert len(hypotheses) == 5 and scores == sorted(scores, reverse=True)
            assert len({tuple(h.tokens) for h in hypotheses}) == 5  # all different


@torch.no_grad()
def test_scores_are_log_probabilities_under_the_model():
    model = model_of(eos_bias=2.5)
    src, lengths = padded(SOURCES[:1])
    alpha = 1.0
    for h in beam_search(model, src, lengths, beam_size=4, n_best=4, length_penalty_alpha=alpha)[0]:
        tokens = h.tokens + [EOS_ID]
        source = model.encode(src, lengths)
        state, previous, total = source.initial_state, torch.tensor([BOS_ID]), 0.0
        for token in tokens:
            step = model.decode_step(previous, state, source)
            total += float(step.logits.log_softmax(-1)[0, token])
            state, previous = step.state, torch.tensor([token])
        assert h.score == pytest.approx(total / length_penalty(len(tokens), alpha), abs=1e-4)


def test_attention_comes_back_per_output_token():
    model = model_of(eos_bias=2.5)
    src, lengths = padded(SOURCES)
    for hypothesis, n in zip(greedy_search(model, src, lengths, return_attention=True), (6, 3, 2, 5), strict=True):
        assert hypothesis.attention.shape == (len(hypothesis.output_ids), n)  # the </s> step too, when it ended
        assert hypothesis.output_ids[-1:] == [EOS_ID] if hypothesis.ended else EOS_ID not in hypothesis.output_ids
        assert torch.allclose(hypothesis.attention.sum(-1), torch.ones(hypothesis.attention.shape[0]), atol=1e-5)
    (beam,) = beam_search(model, src[:1], lengths[:1], beam_size=3, return_attention=True)
    assert beam[0].attention.shape[1] == 6


def test_nbest_cannot_exceed_the_beam():
    model = model_of()
    src, lengths = padded(SOURCES)
    with pytest.raises(ValueError, match="n_best"):
        beam_search(model, src, lengths, beam_size=2, n_best=3)


def test_gnmt_length_penalty():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
