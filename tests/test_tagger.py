"""The sequence tagger model: shapes, padding never changes a sentence's emissions or loss, and it learns."""

from dataclasses import dataclass

import pytest
import torch

from nlp_rnn.tagger import SequenceTagger, TagBatch


@dataclass(frozen=True)
class TinyConfig:
    cell: str = "lstm"
    embedding_dim: int = 8
    char_embedding_dim: int = 4
    char_filters: int = 6
    char_kernel_size: int = 3
    hidden_size: int = 8
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.0
    embedding_dropout: float = 0.0
    packed: str = "auto"
    output: str = "crf"


def batch_of(words: list[list[int]], tags: list[list[int]]) -> TagBatch:
    lengths = torch.tensor([len(w) for w in words])
    length = int(lengths.max())
    ids = torch.zeros(len(words), length, dtype=torch.long)
    chars = torch.zeros(len(words), length, 3, dtype=torch.long)
    tag_ids = torch.zeros(len(words), length, dtype=torch.long)
    for row, (sentence, sentence_tags) in enumerate(zip(words, tags, strict=True)):
        ids[row, : len(sentence)] = torch.tensor(sentence)
        chars[row, : len(sentence), 0] = torch.tensor(sentence)  # one "character" per word, its id
        tag_ids[row, : len(sentence)] = torch.tensor(sentence_tags)
    mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    return TagBatch(ids, chars, lengths, mask, tag_ids)


@pytest.mark.parametrize("output", ["crf", "softmax"])
def test_padding_never_changes_a_sentence(output):
    torch.manual_seed(0)
    model = SequenceTagger(TinyConfig(output=output), vocab_size=10, num_chars=10, num_tags=3).eval()
    alone = batch_of([[4, 5]], [[1, 2]])
    padded = batch_of([[4, 5], [6, 7, 8, 9]], [[1, 2], [0, 1, 2, 0]])
    with torch.no_grad():
        emissions_alone, loss_alone = model(alone, targets=alone.tags)
        emissions_padded, _ = model(padded, targets=padded.tags)
        _, loss_first = model(batch_of([[4, 5]], [[1, 2]]), targets=alone.tags)
    assert emissions_padded.shape == (2, 4, 3)
    assert torch.allclose(emissions_alone[0], emissions_padded[0, :2], atol=1e-6)
    assert model.decode(emissions_alone, alone.mask)[0][0] == model.decode(emissions_padded, padded.mask)[0][0]
    assert float(loss_alone) == pytest.approx(float(loss_first))


def test_the_crf_tagger_learns_a_rule():
    torch.manual_seed(0)
    words = [[3 + (i + j) % 6 for j in range(5)] for i in range(12)]
    tags = [[1 if w % 2 else 0 for w in sentence] for sentence in words]  # odd word ids are tag 1
    batch = batch_of(words, tags)
    model = SequenceTagger(TinyConfig(), vocab_size=10, num_chars=10, num_tags=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        model(batch, targets=batch.tags)[1].backward()
        optimizer.step()
    with torch.no_grad():
        predicted, probabilities = model.decode(model.eval()(batch)[0], batch.mask)
    assert predicted == tags
    assert all(0.5 < p <= 1.0 + 1e-6 for row in probabilities for p in row)
