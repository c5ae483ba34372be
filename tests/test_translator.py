"""The encoder-decoder: the fast teacher-forced path equals the step loop, padding changes nothing,
teacher forcing feeds predictions when asked, the loss ignores padding, tied weights are one matrix; an ensemble of
one model (or of a model and itself) searches as that model does, and any ensemble's beam of one equals its greedy
search."""

import pytest
import torch

from nlp_rnn.batching import PairCollator
from nlp_rnn.config import TrainConfig, TranslatorConfig, choices
from nlp_rnn.decoder import DecoderStep, EncodedSource
from nlp_rnn.search import beam_search, greedy_search
from nlp_rnn.tasks import TEACHER_FORCING_SCHEDULES, teacher_forcing_ratio
from nlp_rnn.tokenization import BOS_ID, EOS_ID
from nlp_rnn.translator import Translator, TranslatorEnsemble

SMALL = dict(embedding_dim=12, hidden_size=10, decoder_hidden_size=20, attention_size=9, dropout=0.0,
             embedding_dropout=0.0)
VARIANTS = [dict(attention="bahdanau"), dict(attention="luong_general"), dict(attention="luong_dot"),
            dict(attention="luong_general", input_feeding=True), dict(attention="bahdanau", decoder_layers=2),
            dict(attention="luong_general", tie_embeddings=True, num_layers=2)]


def model_of(seed=0, **overrides) -> Translator:
    torch.manual_seed(seed)
    return Translator(TranslatorConfig(**{**SMALL, **overrides}), 30, 25).eval()


def batch_of(pairs):
    examples = [{"src": src + [EOS_ID], "tgt": [BOS_ID, *tgt, EOS_ID]} for src, tgt in pairs]
    return PairCollator(0)(examples)


PAIRS = [([5, 6, 7, 8, 9], [4, 5, 6]), ([10, 11], [7, 8, 9, 10, 11, 12]), ([12], [13])]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_shapes_and_named_returns(variant):
    model = model_of(**variant)
    batch = batch_of(PAIRS)
    source = model.encode(batch.src, batch.src_lengths)
    assert isinstance(source, EncodedSource) and source.values.shape == (3, batch.src.size(1), 20)
    step = model.decode_step(batch.tgt_in[:, 0], source.initial_state, source)
    assert isinstance(step, DecoderStep)
    assert step.logits.shape == (3, 25) and step.attention.shape == (3, batch.src.size(1))
    logits, loss = model(batch, targets=batch.tgt_out)
    assert logits.shape == (*batch.tgt_out.shape, 25) and loss.dim() == 0


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_fast_path_gives_the_same_loss_and_gradients_as_the_step_loop(variant):
    model = model_of(**variant)
    batch = batch_of(PAIRS)
    fast_logits, fast_loss = model(batch, targets=batch.tgt_out)
    fast_loss.backward()
    fast_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    model.fast_path = False
    step_logits, step_loss = model(batch, targets=batch.tgt_out)
    step_loss.backward()
    mask = batch.tgt_mask
    assert torch.allclose(fast_logits[mask], step_logits[mask], atol=1e-5)
    assert torch.allclose(fast_loss, step_loss, atol=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(fast_grads[name], p.grad, atol=1e-5), name


@pytest.mark.parametrize("variant", [dict(attention="bahdanau"), dict(attention="luong_general", input_feeding=True)])
def test_variants_that_must_step_have_no_fast_path(variant):
    assert not model_of(**variant).decoder.parallel


@pytest.mark.parametrize("variant", VARIANTS[:4], ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_a_pair_alone_and_padded_in_a_batch_give_the_same_logits(variant):
    model = model_of(**variant)
    batch = batch_of(PAIRS)
    logits, _ = model(batch)
    for row, pair in enumerate(PAIRS):
        alone, _ = model(batch_of([pair]))
        length = len(pair[1]) + 1
        assert torch.allclose(alone[0, :length], logits[row, :length], atol=1e-5)


def test_loss_ignores_padding_and_smoothing_raises_it():
    model = model_of(attention="luong_general")
    batch = batch_of(PAIRS)
    logits, loss = model(batch, targets=batch.tgt_out)
    real = batch.tgt_mask
    expected = torch.nn.functional.cross_entropy(logits[real], batch.tgt_out[real])
    assert torch.allclose(loss, expected, atol=1e-6)
    smoothed = Translator(model.config, 30, 25, label_smoothing=0.1).eval()
    smoothed.load_state_dict(model.state_dict())
    log_probs = logits[real].log_softmax(-1)
    by_hand = 0.9 * expected - 0.1 * log_probs.mean(-1).mean()  # (1 - eps) CE + eps CE(uniform)
    assert torch.allclose(smoothed(batch, targets=batch.tgt_out)[1], by_hand, atol=1e-5)


def test_teacher_forcing_zero_feeds_the_models_own_predictions():
    model = model_of(attention="bahdanau")
    batch = batch_of(PAIRS)
    source = model.encode(batch.src, batch.src_lengths)
    free_running = model.teacher_forced_logits(batch.tgt_in, source, teacher_forcing_ratio=0.0)
    state, tokens = source.initial_state, batch.tgt_in[:, 0]
    for t in range(batch.tgt_in.size(1)):
        step = model.decode_step(tokens, state, source)
        assert torch.allclose(free_running[:, t], step.logits, atol=1e-6)
        state, tokens = step.state, step.logits.argmax(-1)
    forced = model.teacher_forced_logits(batch.tgt_in, source, teacher_forcing_ratio=1.0)
    assert not torch.allclose(forced, free_running)


def test_teacher_forcing_is_decided_per_example_and_step():
    model = model_of(attention="bahdanau")
    batch = batch_of(PAIRS * 20)
    source = model.encode(batch.src, batch.src_lengths)
    forced = model.teacher_forced_logits(batch.tgt_in, source, 1.0)
    torch.manual_seed(1)
    mixed = model.teacher_forced_logits(batch.tgt_in, source, 0.5)
    same = torch.isclose(forced, mixed, atol=1e-6).all(-1)[:, 1:]  # (batch, steps): step t fed the gold token?
    assert same.any() and not same.all()
    assert not same.all(dim=1).all() and same.any(dim=0).all()  # mixed across examples within every step


def test_tied_embeddings_share_one_matrix_and_survive_save_and_load(tmp_path):
    from nlp_rnn import checkpoint as ckpt

    model = model_of(attention="luong_general", tie_embeddings=True)
    assert model.decoder.output.weight is model.decoder.embedding.weight  # (25, 12): o_t is embedding-sized
    ckpt.save_weights(tmp_path / "model.safetensors", model, {})
    tensors, _ = ckpt.load_weights(tmp_path / "model.safetensors")
    again = model_of(seed=1, attention="luong_general", tie_embeddings=True)
    ckpt.load_into(again, tensors, tmp_path / "model.safetensors")
    assert again.decoder.output.weight is again.decoder.embedding.weight
    batch = batch_of(PAIRS)
    assert torch.equal(model(batch)[0], again(batch)[0])


def test_teacher_forcing_schedules():
    constant = TrainConfig(teacher_forcing=0.8)
    assert teacher_forcing_ratio(constant, 0, 100) == teacher_forcing_ratio(constant, 99, 100) == 0.8
    linear = TrainConfig(teacher_forcing=1.0, teacher_forcing_schedule="linear", teacher_forcing_final=0.5)
    assert [teacher_forcing_ratio(linear, s, 100) for s in (0, 50, 100)] == [1.0, 0.75, 0.5]
    sigmoid = TrainConfig(teacher_forcing_schedule="inverse_sigmoid", teacher_forcing_k=10.0)
    ratios = [teacher_forcing_ratio(sigmoid, s, 1000) for s in range(0, 200, 10)]
    assert ratios[0] == pytest.approx(10 / 11) and all(a > b for a, b in zip(ratios, ratios[1:], strict=False))
    assert ratios[-1] < 0.01


def test_the_teacher_forcing_schedules_are_exactly_the_configs_choices():
    """One list of names; a name the table lacks is refused, never run as "constant"."""
    from dataclasses import replace

    assert set(TEACHER_FORCING_SCHEDULES) == set(choices(TrainConfig, "teacher_forcing_schedule"))
    with pytest.raises(ValueError, match="unknown teacher_forcing_schedule 'cosine'.*inverse_sigmoid"):
        teacher_forcing_ratio(replace(TrainConfig(), teacher_forcing_schedule="cosine"), 0, 10)  # unchecked


# -- ensembles ------------------------------------------------------------------------------------------------

def ending_model(seed, **overrides) -> Translator:
    """An untrained model whose </s> is likely enough that hypotheses end at varied lengths."""
    model = model_of(seed, **overrides)
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] += 2.5
    return model


def searches(model, beam_size=3):
    batch = batch_of(PAIRS)
    greedy = greedy_search(model, batch.src, batch.src_lengths, return_attention=True)
    beam = beam_search(model, batch.src, batch.src_lengths, beam_size=beam_size, n_best=2, return_attention=True)
    return greedy, beam


def assert_same_search(found, expected):
    (greedy, beam), (greedy_expected, beam_expected) = found, expected
    assert [h.tokens for h in greedy] == [h.tokens for h in greedy_expected]
    assert [[h.tokens for h in n] for n in beam] == [[h.tokens for h in n] for n in beam_expected]
    for h, e in zip([*greedy, *sum(beam, [])], [*greedy_expected, *sum(beam_expected, [])], strict=True):
        assert h.score == pytest.approx(e.score, abs=1e-4)
        torch.testing.assert_close(h.attention, e.attention)


@pytest.mark.parametrize("variant", [dict(attention="bahdanau"), dict(attention="luong_general", input_feeding=True)])
def test_an_ensemble_of_one_model_or_of_a_model_and_itself_searches_as_the_model(variant):
    model = ending_model(0, **variant)
    expected = searches(model)
    assert_same_search(searches(TranslatorEnsemble([model]).eval()), expected)
    assert_same_search(searches(TranslatorEnsemble([model, model]).eval()), expected)


def test_an_ensemble_steps_with_the_log_of_its_members_mean_probabilities():
    members = [ending_model(0), ending_model(1, attention="luong_general", decoder_layers=2)]
    ensemble = TranslatorEnsemble(members).eval()
    batch = batch_of(PAIRS)
    with torch.no_grad():
        source = ensemble.encode(batch.src, batch.src_lengths)
        step = ensemble.decode_step(batch.tgt_in[:, 0], source.initial_state, source)
        mean = sum(m.decode_step(batch.tgt_in[:, 0], s.initial_state, s).logits.softmax(-1)
                   for m, s in zip(members, source.members, strict=True)) / 2
        torch.testing.assert_close(step.logits, mean.log())
        torch.testing.assert_close(step.logits.exp().sum(-1), torch.ones(3))
        log_probs, loss = ensemble(batch, targets=batch.tgt_out)  # teacher-forced: the same distributions
        torch.testing.assert_close(log_probs[:, 0], mean.log())
        expected = -log_probs.gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)[batch.tgt_mask].mean()
        torch.testing.assert_close(loss, expected)


def test_two_different_models_give_a_valid_ensemble_whose_beam_of_one_is_greedy():
    ensemble = TranslatorEnsemble([ending_model(0), ending_model(1, attention="luong_general")]).eval()
    greedy, beam = searches(ensemble)
    assert all(0 <= token < 25 and token != EOS_ID for h in greedy for token in h.tokens)
    assert all(h.attention.shape[0] == len(h.output_ids) for h in greedy)
    assert all(n[0].score >= n[1].score for n in beam)
    batch = batch_of(PAIRS)
    beam_of_one = beam_search(ensemble, batch.src, batch.src_lengths, beam_size=1)
    assert [h.tokens for h in greedy] == [n[0].tokens for n in beam_of_one]
    singles = [greedy_search(ensemble, b.src, b.src_lengths)[0].tokens for b in (batch_of([p]) for p in PAIRS)]
    assert singles == [h.tokens for h in greedy]  # a batch translates as its sentences one by one
