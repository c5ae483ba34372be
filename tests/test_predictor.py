from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import nlp_rnn
from nlp_rnn.batching import EncodedDataset
from nlp_rnn.evaluation import predict_logits

pytestmark = pytest.mark.slow

TEXTS = ["An absolute delight from start to finish.", "Boring, predictable and far too long.",
         "It was fine.", "I laughed, I cried, I want my money back."]


def test_load_predict_matches_the_trained_model(tiny_run):
    """save -> load gives the same probabilities as the weights in the run folder, batched or one by one."""
    predictor = nlp_rnn.load(tiny_run)
    together = predictor.predict(TEXTS)
    alone = [predictor.predict([text])[0] for text in TEXTS]
    for a, b in zip(together, alone, strict=True):
        assert a["label"] == b["label"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert a["score"] == max(a["scores"].values())
        assert sum(a["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    logits = predict_logits(predictor.model, EncodedDataset(predictor.encode(TEXTS)), 2, torch.device("cpu"))
    assert torch.allclose(logits.softmax(-1), predictor.predict_proba(TEXTS), atol=1e-6)


def test_predict_is_thread_safe(tiny_run):
    predictor = nlp_rnn.load(tiny_run)
    expected = predictor.predict(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: predictor.predict(TEXTS), range(8)))
    assert all(r == expected for r in results)


def test_empty_text_is_a_clear_error(tiny_run):
    predictor = nlp_rnn.load(tiny_run)
    with pytest.raises(nlp_rnn.NlpRnnError, match="text 1 has no tokens"):
        predictor.predict(["good", "  \n "])
    assert predictor.predict([]) == []
    with pytest.raises(TypeError, match="list"):
        predictor.predict("a bare string")


def test_attention_weights_cover_the_tokens(tiny_run):
    predictor = nlp_rnn.load(tiny_run)
    tokens, weights = predictor.token_weights("What a <br /> film!")
    assert "<" not in "".join(tokens)  # the HTML line break was normalised away
    assert len(tokens) == len(weights) and sum(weights) == pytest.approx(1.0, abs=1e-5)
