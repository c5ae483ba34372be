import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch

import nlp_rnn
from nlp_rnn.batching import EncodedDataset
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.evaluation import predict_logits

pytestmark = pytest.mark.slow

TEXTS = ["An absolute delight from start to finish.", "Boring, predictable and far too long.",
         "It was fine.", "I laughed, I cried, I want my money back."]


def reference_probabilities(run_dir, texts) -> torch.Tensor:
    """The run folder's own files, read without the predictor: its config, tokenizer, weights and calibration
    temperature, one padded batch through the model's forward."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    from nlp_rnn.batching import Collator
    from nlp_rnn.config import config_from_dict, read_yaml
    from nlp_rnn.tokenization import PAD_ID, encode_texts

    config = config_from_dict(read_yaml(run_dir / "config.yaml"))
    tokenizer = Tokenizer.from_file(str(run_dir / "tokenizer.json"))
    tensors = load_file(run_dir / "model.safetensors")
    model = SentimentClassifier(config.model, tokenizer.get_vocab_size(), tensors["head.bias"].numel())
    model.load_state_dict(tensors)
    data = config.data
    ids = encode_texts(tokenizer, texts, data.max_length, data.truncation, data.head_fraction)
    batch = Collator(PAD_ID)([{"input_ids": row} for row in ids])
    with torch.no_grad():
        logits, _ = model.eval()(batch)
    calibration = run_dir / "calibration.json"
    temperature = json.loads(calibration.read_text())["temperature"] if calibration.is_file() else 1.0
    return (logits / temperature).softmax(-1)


def test_load_predict_matches_the_trained_model(tiny_run):
    """save -> load gives the probabilities the saved model's own forward gives on the same batch, and the same
    batched or one by one; each label is the most probable of the run's label names."""
    predictor = nlp_rnn.load(tiny_run)
    expected = reference_probabilities(tiny_run, TEXTS)
    assert torch.allclose(predictor.predict_proba(TEXTS), expected, atol=1e-6)
    together = predictor.predict(TEXTS)
    alone = [predictor.predict([text])[0] for text in TEXTS]
    for a, b in zip(together, alone, strict=True):
        assert a["label"] == b["label"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert a["score"] == max(a["scores"].values())
        assert sum(a["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    labels = json.loads((tiny_run / "metrics.json").read_text())["labels"]
    assert [p["label"] for p in together] == [labels[i] for i in expected.argmax(-1).tolist()]
    for prediction, row in zip(together, expected.tolist(), strict=True):
        assert list(prediction["scores"]) == labels
        assert list(prediction["scores"].values()) == pytest.approx(row, abs=1e-6)
    logits = predict_logits(predictor.model, EncodedDataset(predictor.encode(TEXTS)), 2, torch.device("cpu"))
    assert torch.allclose((logits / predictor.temperature).softmax(-1), expected, atol=1e-6)  # small batches


def test_a_scoring_pass_can_show_its_progress_and_scores_the_same(tiny_run, capsys):
    predictor = nlp_rnn.load(tiny_run)
    dataset = EncodedDataset(predictor.encode(TEXTS))
    quiet = predict_logits(predictor.model, dataset, 2, torch.device("cpu"))
    assert capsys.readouterr().err == ""
    shown = predict_logits(predictor.model, dataset, 2, torch.device("cpu"), progress="teacher")
    assert torch.equal(shown, quiet)
    assert "teacher" in capsys.readouterr().err


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
    text = "What a <br /> film!"
    explanation = predictor.explain(text)
    assert explanation["method"] == "attention"  # the tiny model pools with attention
    tokens, scores, spans = explanation["tokens"], explanation["scores"], explanation["spans"]
    assert "<" not in "".join(tokens)  # the HTML line break was normalised away
    assert len(tokens) == len(scores) == len(spans) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert [text[a:b].lower() for a, b in spans] == tokens  # offsets point into the original text
    assert explanation["prediction"] == predictor.predict([text])[0]


def test_gradient_x_input_without_attention(tiny_run, tmp_path):
    """Max-pooled models explain with gradient x input; it matches a finite difference of the logit."""
    from nlp_rnn.batching import Collator

    predictor = nlp_rnn.load(tiny_run)
    model = SentimentClassifier(replace(predictor.config.model, pooling="max_mean"),
                                predictor.tokenizer.get_vocab_size(), 2).eval()
    predictor = type(predictor)(predictor.config, predictor.tokenizer, model, predictor.labels, tiny_run)
    explanation = predictor.explain("a dull and boring film " * 200)
    assert explanation["method"] == "gradient x input" and explanation["truncated"]
    assert len(explanation["scores"]) == predictor.config.data.max_length
    # Scaling one token's embedding by (1 + eps) changes the logit by about eps * its gradient x input.
    ids = predictor.encode(["a dull and boring film"])[0]
    batch = Collator(0)([{"input_ids": ids}])
    label = torch.tensor([1])
    attributions = model.gradient_x_input(batch, label)[0]
    embedded = model.encoder.embedding(batch.input_ids).detach()
    eps = 1e-3
    with torch.no_grad():
        base = model.head(model.pooling(model.encoder.encode_embedded(embedded, batch.lengths))[0])[0, 1]
        scaled = embedded.clone()
        scaled[0, 2] *= 1 + eps
        moved = model.head(model.pooling(model.encoder.encode_embedded(scaled, batch.lengths))[0])[0, 1]
    assert float(moved - base) / eps == pytest.approx(float(attributions[2]), rel=0.05, abs=1e-5)
    assert not any(p.grad is not None for p in model.parameters())  # nothing written on the model


def test_quantized_classifier_is_int8_and_still_explains(tiny_run, tmp_path):
    from torch.ao.nn.quantized.dynamic import LSTM as QuantizedLSTM

    from nlp_rnn.predictor import quantize_int8

    texts = ["A wonderful, moving film.", "Dull and far too long.", "I laughed, I cried, I left happy."] * 3
    full = nlp_rnn.load(tiny_run)
    quantized = nlp_rnn.load(tiny_run, quantize=True)
    assert isinstance(quantized.model.encoder.layers[0][0], QuantizedLSTM)
    assert not isinstance(full.model.encoder.layers[0][0], QuantizedLSTM)  # a copy: the float model is kept
    difference = (quantized.predict_proba(texts) - full.predict_proba(texts)).abs().max()
    assert 0 < difference < 0.05  # int8 arithmetic, close to float
    # max-pooled: explain needs gradients through the encoder, so it uses the float copy
    model = SentimentClassifier(replace(full.config.model, pooling="max_mean"), full.tokenizer.get_vocab_size(), 2)
    predictor = type(full)(full.config, full.tokenizer, quantize_int8(model), full.labels, tiny_run,
                           explain_model=model)
    explanation = predictor.explain("a dull and boring film")
    assert explanation["method"] == "gradient x input" and any(s != 0 for s in explanation["scores"])


def test_quantized_translator_translates_like_float(reversal_run):
    texts = ["1 2 3", "9 8 7 6 5 4 3", "4 4 0 1", "5"]
    full = [t["translation"] for t in nlp_rnn.load(reversal_run).translate(texts, beam_size=3)]
    assert [t["translation"] for t in nlp_rnn.load(reversal_run, quantize=True).translate(texts)] == full


def test_quantize_is_cpu_only(tiny_run):
    with pytest.raises(nlp_rnn.NlpRnnError, match="CPU"):
        nlp_rnn.load(tiny_run, device="cuda", quantize=True)


def test_an_absent_device_is_one_clear_error(tiny_run):
    import torch

    if torch.cuda.is_available():  # a GPU machine: the same call runs there
        assert nlp_rnn.load(tiny_run, device="cuda").device.type == "cuda"
    else:
        with pytest.raises(nlp_rnn.NlpRnnError, match="device 'cuda': .*CUDA"):
            nlp_rnn.load(tiny_run, device="cuda")
    with pytest.raises(nlp_rnn.NlpRnnError, match="not a device"):
        nlp_rnn.load(tiny_run, device="gpu")
    assert nlp_rnn.load(tiny_run, device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
