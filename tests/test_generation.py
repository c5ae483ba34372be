"""Generation: the samplers on hand-made distributions, a tiny character model that learns a synthetic pattern and
writes it with greedy decoding, reproducible and batch-independent sampling, label conditioning, the CLI, bad
requests as one-line errors or notices."""

import json

import pytest

import nlp_rnn
from nlp_rnn.cli import main
from nlp_rnn.config import load_config
from nlp_rnn.errors import NlpRnnError
from tests.test_cli import assert_one_line_error, run_cli
from tests.tiny import assert_resumed_run_matches, write_generation_config, write_generation_texts

# -- a tiny model --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_folder(tiny_writer):
    return tiny_writer.parent  # the data and config tests/conftest.py's tiny_writer was trained from


@pytest.mark.slow
def test_the_tiny_model_writes_the_pattern_greedily(tiny_writer, capsys):
    writer = nlp_rnn.load(tiny_writer)
    (result,) = writer.generate(["the c"], greedy=True, max_new_tokens=40)
    assert result["text"] == "at sat on the mat. the cat sat on the ma"
    assert result["stopped"] == "length" and result["tokens"] == 40
    assert main(["evaluate", str(tiny_writer), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["bpc"] == pytest.approx(report["loss"] / 0.693147, rel=1e-4) and report["bpc"] < 0.5
    assert main(["evaluate", str(tiny_writer), "--split", "validation+test", "--json"]) == 0  # joined, in order
    joined = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["num_tokens"] < joined["num_tokens"] <= 2 * report["num_tokens"] + 256


@pytest.mark.slow
def test_sampling_is_reproducible_batch_independent_and_streams_the_same_text(tiny_writer):
    writer = nlp_rnn.load(tiny_writer)
    options = {"max_new_tokens": 60, "temperature": 1.5, "top_p": 0.95, "seed": 11}
    first = writer.generate(["the ", "a d"], num_samples=2, **options)
    assert first == writer.generate(["the ", "a d"], num_samples=2, **options)  # a fixed seed: the same samples
    assert len({r["text"] for r in first}) > 1
    for row, result in enumerate(first):  # each row alone, with its own seed, gives what the batch gave it
        alone = writer.generate([result["prompt"]], **{**options, "seed": 11 + row})
        assert alone[0]["text"] == result["text"]
        assert "".join(writer.stream(result["prompt"], **{**options, "seed": 11 + row})) == result["text"]
    assert writer.generate(["the c"], top_k=1, seed=3, max_new_tokens=30)[0]["text"] == \
        writer.generate(["the c"], greedy=True, max_new_tokens=30)[0]["text"]


@pytest.mark.slow
def test_generation_always_stops_and_bad_requests_get_notices(tiny_writer, caplog):
    writer = nlp_rnn.load(tiny_writer)
    (empty,) = writer.generate([""], seed=0, max_new_tokens=20)  # from the start token
    assert empty["tokens"] <= 20 and empty["notices"] == []
    (capped,) = writer.generate(["the"], greedy=True, max_new_tokens=10**9, stop=" mat.")
    assert capped["notices"] == ["max_new_tokens 1000000000 capped to 5000"] and capped["stopped"] == "stop"
    assert " mat." not in capped["text"] and capped["text"].endswith("sat on the")
    (unknown,) = writer.generate(["the cat 😀 Zq"], greedy=True, max_new_tokens=5)
    assert "the model does not know" in unknown["notices"][0] and "😀" in unknown["notices"][0]
    long_prompt = "the cat sat on the mat. " * 40
    (cut,) = writer.generate([long_prompt], greedy=True, max_new_tokens=5)
    assert any("only its last 400 were read" in n for n in cut["notices"])
    for request, message in (({"temperature": 0}, "temperature must be > 0"), ({"top_p": 2.0}, "top_p"),
                             ({"label": "pos"}, "not conditioned"), ({"max_new_tokens": 0}, "max_new_tokens")):
        with pytest.raises(NlpRnnError, match=message):
            writer.generate(["the"], **request)


@pytest.mark.slow
def test_generate_command_streams_and_prints_json(tiny_writer):
    result = run_cli("generate", str(tiny_writer), "--prompt", "the c", "--greedy", "--max-new-tokens", "20")
    assert result.returncode == 0 and result.stdout.decode() == "the cat sat on the mat. t\n"
    result = run_cli("generate", str(tiny_writer), "--num-samples", "2", "--seed", "5", "--json",
                     "--max-new-tokens", "30")
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["seed"] for r in rows] == [5, 6] and all(r["prompt"] == "" for r in rows)
    streamed = run_cli("generate", str(tiny_writer), "--num-samples", "2", "--seed", "5", "--max-new-tokens", "30")
    assert streamed.stdout.decode() == rows[0]["text"] + "\n\n" + rows[1]["text"] + "\n"
    assert_one_line_error(run_cli("generate", str(tiny_writer), "--temperature", "0"), "temperature must be > 0")
    assert_one_line_error(run_cli("generate", str(tiny_writer), "--top-p", "1.5"), "top_p must be in (0, 1]")
    capped = run_cli("generate", str(tiny_writer), "--greedy", "--max-new-tokens", "999999", "--stop", ".")
    assert capped.returncode == 0 and "note: max_new_tokens 999999 capped to 5000" in capped.stderr.decode()


@pytest.fixture(scope="module")
def conditioned_writer(tmp_path_factory):
    """A tiny writer of labelled texts: label 1 texts say "good", label 0 texts "bad"."""
    folder = tmp_path_factory.mktemp("conditioned")
    write_generation_texts(folder / "data", labelled=True)
    config = write_generation_config(folder, {"stream": False, "label_column": "label"}, epochs=6)
    assert main(["train", config, "--out", str(folder / "run")]) == 0
    return nlp_rnn.load(folder / "run")


@pytest.mark.slow
def test_a_conditioned_model_writes_the_requested_label(conditioned_writer):
    writer = conditioned_writer
    assert writer.labels == ["0", "1"]
    good = writer.generate([""], label="1", num_samples=5, seed=0, temperature=0.7)
    bad = writer.generate([""], label="0", num_samples=5, seed=0, temperature=0.7)
    assert all("good" in r["text"] and "bad" not in r["text"] and r["stopped"] == "end" for r in good), good
    assert all("bad" in r["text"] and "good" not in r["text"] for r in bad), bad
    with pytest.raises(NlpRnnError, match="unknown label 'maybe'; this model writes: 0, 1"):
        writer.generate([""], label="maybe")
    with pytest.raises(NlpRnnError, match="this model writes on request of a label; give one of: 0, 1"):
        writer.generate(["good"])


@pytest.mark.slow
def test_streamed_training_resumes_to_the_same_weights(tmp_path, text_folder):
    config = load_config(write_generation_config(text_folder, epochs=2))
    assert_resumed_run_matches(config, tmp_path, stop_at=7)  # mid epoch: the carried state is in the checkpoint


def test_conditioning_a_stream_is_a_config_error(tmp_path):
    write_generation_texts(tmp_path / "data", labelled=True)
    with pytest.raises(Exception, match="data.label_column: conditioning needs one row per text"):
        load_config(write_generation_config(tmp_path, {"label_column": "label"}))


def test_a_subword_continuation_keeps_the_space_before_its_first_word():
    from types import SimpleNamespace

    from nlp_rnn.config import TokenizerConfig
    from nlp_rnn.tasks.generation import GeneratorPredictor
    from nlp_rnn.tokenization import BOS_ID, train_tokenizer

    tokenizer = train_tokenizer(["this movie was great", "the movie was bad"] * 20,
                                TokenizerConfig(type="bpe", vocab_size=60, min_frequency=1))
    holder = SimpleNamespace(task=SimpleNamespace(tokenizer=tokenizer))
    head = [BOS_ID, *tokenizer.encode("this movie").ids]
    written = tokenizer.encode("was great").ids
    assert GeneratorPredictor._decode(holder, head, written) == " was great"
    assert GeneratorPredictor._decode(holder, [BOS_ID], written) == "was great"  # a new text starts bare


@pytest.mark.slow
def test_guidance_zero_is_plain_sampling_and_guidance_needs_a_sane_weight(conditioned_writer):
    writer = conditioned_writer
    options = {"label": "1", "num_samples": 4, "seed": 3, "max_new_tokens": 20}
    assert writer.generate([""], guidance=0.0, **options) == writer.generate([""], **options)
    guided = writer.generate([""], guidance=3.0, **options)
    assert guided == writer.generate([""], guidance=3.0, **options) and guided != writer.generate([""], **options)
    assert [r["text"] for r in guided] == ["".join(writer.stream("", label="1", seed=3 + i, max_new_tokens=20,
                                                                 guidance=3.0)) for i in range(4)]
    with pytest.raises(NlpRnnError, match="guidance must be >= 0"):
        writer.generate([""], guidance=-1.0, **options)


@pytest.mark.slow
def test_beam_search_of_width_one_is_greedy_and_a_wider_beam_writes_the_pattern(tiny_writer):
    writer = nlp_rnn.load(tiny_writer)
    greedy = writer.generate(["the c", "a d"], greedy=True, max_new_tokens=30)
    beam1 = writer.generate(["the c", "a d"], beam_size=1, max_new_tokens=30)
    assert [r["text"] for r in beam1] == [r["text"] for r in greedy]
    best = writer.generate(["the c"], beam_size=4, num_samples=2, max_new_tokens=30)
    assert len(best) == 2 and best[0]["text"].startswith("at sat on the mat.") and best[0]["text"] != best[1]["text"]
    result = run_cli("generate", str(tiny_writer), "--prompt", "the c", "--beam", "3", "--max-new-tokens", "20")
    assert result.returncode == 0 and result.stdout.decode().startswith("the cat sat on the mat.")
    with pytest.raises(NlpRnnError, match="beam_size must be"):
        writer.generate(["the"], beam_size=2, num_samples=3)
