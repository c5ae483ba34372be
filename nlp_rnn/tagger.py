"""The sequence tagger: word embedding + a character CNN per word (Ma & Hovy 2016; Lample et al. 2016 use a
char BiLSTM) -> the shared recurrent encoder -> dropout -> a linear layer per token -> softmax or a CRF
(flair's ``SequenceTagger``). ``forward`` gives emissions and the loss; decoding (:meth:`decode`) is apart.

With a subword tokenizer a word is several tokens: the encoder reads every token, and a word's tag is scored at
its first token only (``TagBatch.word_starts``), so the CRF chains words and the other pieces never reach the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from nlp_rnn.crf import CRF
from nlp_rnn.encoder import RecurrentEncoder


@dataclass
class TagBatch:
    input_ids: Tensor  # (batch, len) token ids, padded with 0
    char_ids: Tensor  # (batch, len, max_chars) character ids of each token, padded with 0
    lengths: Tensor  # (batch,) int64 tokens per row, on the CPU
    mask: Tensor  # (batch, len) bool, True at real tokens
    tags: Tensor | None = None  # (batch, words) int64, 0 at padding (masked)
    word_starts: Tensor | None = None  # (batch, words) each word's first token; None: one token per word
    word_mask: Tensor | None = None  # (batch, words) bool, True at real words (with word_starts)

    def to(self, device: torch.device | str) -> TagBatch:
        def move(tensor):
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return TagBatch(move(self.input_ids), move(self.char_ids), self.lengths, move(self.mask), move(self.tags),
                        move(self.word_starts), move(self.word_mask))

    @property
    def tag_mask(self) -> Tensor:
        """(batch, words) bool: the positions that carry a tag."""
        return self.mask if self.word_starts is None else self.word_mask

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


class CharCNN(nn.Module):
    """Each word's characters -> embedding -> convolution -> max over the word's characters (Ma & Hovy 2016)."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernel_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel_size, padding=kernel_size // 2)
        self.output_size = filters

    def forward(self, char_ids: Tensor) -> Tensor:
        """(batch, len, chars) -> (batch, len, filters); zero for padded words."""
        batch, length, chars = char_ids.shape
        flat = char_ids.reshape(batch * length, chars)  # (words, chars)
        features = self.conv(self.embedding(flat).transpose(1, 2))  # (words, filters, chars)
        features = features.masked_fill((flat == 0).unsqueeze(1), float("-inf")).max(dim=2).values
        features = torch.where(torch.isinf(features), torch.zeros_like(features), features)  # words with no chars
        return features.view(batch, length, -1)


class SequenceTagger(nn.Module):
    """``config``: the ``model:`` section of a tagging config (nlp_rnn.tasks.tagging.TaggerConfig)."""

    def __init__(self, config, vocab_size: int, num_chars: int, num_tags: int, pad_id: int = 0,
                 unk_id: int = 1) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.unk_id = unk_id
        self.word_dropout = getattr(config, "word_dropout", 0.0)
        self.word_embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_id)
        use_chars = getattr(config, "char_features", True)
        self.chars = CharCNN(num_chars, config.char_embedding_dim, config.char_filters,
                             config.char_kernel_size) if use_chars else None
        input_size = config.embedding_dim + (self.chars.output_size if self.chars is not None else 0)
        self.encoder = RecurrentEncoder(1, input_size, config.hidden_size, cell=config.cell,
                                        num_layers=config.num_layers, bidirectional=config.bidirectional,
                                        dropout=config.dropout, embedding_dropout=config.embedding_dropout,
                                        packed=config.packed)
        self.encoder.embedding = None  # words and characters are embedded here; the encoder reads them embedded
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = CRF(num_tags) if config.output == "crf" else None

    def embed(self, batch: TagBatch) -> Tensor:
        """(batch, len, embedding_dim [+ char_filters]): each token's word embedding and character features."""
        input_ids = batch.input_ids
        if self.training and self.word_dropout > 0:  # a known word read as <unk>: the model learns to use context
            dropped = torch.rand(input_ids.shape, device=input_ids.device) < self.word_dropout
            input_ids = input_ids.masked_fill(dropped & batch.mask, self.unk_id)
        embedded = self.word_embedding(input_ids)
        if self.chars is None:
            return embedded
        return torch.cat([embedded, self.chars(batch.char_ids)], dim=-1)

    def emissions(self, batch: TagBatch) -> Tensor:
        """(batch, words, num_tags) tag scores per word (at its first token)."""
        encoded = self.encoder.encode_embedded(self.embed(batch), batch.lengths).outputs  # (batch, len, dirs * hid)
        if batch.word_starts is not None:
            index = batch.word_starts.unsqueeze(-1).expand(-1, -1, encoded.size(-1))
            encoded = encoded.gather(1, index)  # (batch, words, dirs * hidden)
        return self.head(self.dropout(encoded))

    def forward(self, batch: TagBatch, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> (emissions (batch, words, tags), loss): the CRF's negative log-likelihood of the batch's sentences,
        or the softmax's cross-entropy, per word (so the two read alike); padding never counts."""
        emissions = self.emissions(batch)
        if targets is None:
            return emissions, None
        mask = batch.tag_mask
        if self.crf is not None:
            return emissions, self.crf.nll(emissions.float(), targets, mask).sum() / mask.sum()
        loss = nn.functional.cross_entropy(emissions[mask].float(), targets[mask])
        return emissions, loss

    def decode(self, emissions: Tensor, mask: Tensor, allowed: Tensor | None = None,
               allowed_start: Tensor | None = None) -> tuple[list[list[int]], list[list[float]]]:
        """Each row's tags (Viterbi for a CRF, else the argmax) and each tag's probability (CRF marginals).
        ``allowed`` / ``allowed_start`` forbid transitions (IOB2) for a CRF and for softmax alike."""
        emissions = emissions.float()
        if self.crf is None:
            return decode_probabilities(emissions.softmax(-1), mask, allowed, allowed_start)
        paths, _ = self.crf.viterbi(emissions, mask, allowed, allowed_start)
        return paths, _chosen(self.crf.marginals(emissions, mask).clamp(0.0, 1.0), paths)  # exp() may round past 1


class TaggerEnsemble(nn.Module):
    """Trained taggers of one tag set read as one model (``--ensemble``): a word's tag distribution is the mean of
    the members' (CRF marginals or softmax), decoded as a softmax tagger's is, the best valid path under it
    (posterior averaging; the members' CRF transitions are already in their marginals).

    The members may have different vocabularies (a run trained on more data, or with pretrained vectors, knows
    more words): the batch holds ids of their union, and ``word_maps[k]`` / ``char_maps[k]`` (members, union size)
    turn them into member k's own ids, ``<unk>`` for what it never saw, so each member reads exactly what its own
    tokenizer gives it."""

    crf = None

    def __init__(self, members: list[SequenceTagger], word_maps: Tensor, char_maps: Tensor) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.num_tags = members[0].num_tags
        self.register_buffer("word_maps", word_maps, persistent=False)
        self.register_buffer("char_maps", char_maps, persistent=False)

    def probabilities(self, batch: TagBatch) -> Tensor:
        """(batch, words, tags): the members' mean tag distribution of every word."""
        return sum(self._member_probabilities(k, batch) for k in range(len(self.members))) / len(self.members)

    def _member_probabilities(self, k: int, batch: TagBatch) -> Tensor:
        member = self.members[k]
        own = replace(batch, input_ids=self.word_maps[k][batch.input_ids], char_ids=self.char_maps[k][batch.char_ids])
        emissions = member.emissions(own).float()  # (batch, words, tags)
        if member.crf is None:
            return emissions.softmax(-1)
        return member.crf.marginals(emissions, batch.tag_mask).clamp(0.0, 1.0)

    def forward(self, batch: TagBatch, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> (log of the mean distributions (batch, words, tags), the gold tags' negative log-probability per
        word)."""
        log_probabilities = self.probabilities(batch).clamp_min(1e-12).log()
        if targets is None:
            return log_probabilities, None
        mask = batch.tag_mask
        return log_probabilities, nn.functional.nll_loss(log_probabilities[mask], targets[mask])

    def decode(self, emissions: Tensor, mask: Tensor, allowed: Tensor | None = None,
               allowed_start: Tensor | None = None) -> tuple[list[list[int]], list[list[float]]]:
        """``emissions``: what :meth:`forward` returns (log-probabilities)."""
        return decode_probabilities(emissions.float().exp(), mask, allowed, allowed_start)


def decode_probabilities(probabilities: Tensor, mask: Tensor, allowed: Tensor | None = None,
                         allowed_start: Tensor | None = None) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's tags from per-word distributions (batch, words, tags): the argmax of each word, or with
    ``allowed`` transitions the valid path of highest probability (Viterbi with zero transition scores); and
    each chosen tag's probability."""
    if allowed is None:
        confidence, best = probabilities.max(-1)
        lengths = mask.long().sum(1).tolist()
        return ([best[row, :n].tolist() for row, n in enumerate(lengths)],
                [confidence[row, :n].tolist() for row, n in enumerate(lengths)])
    num_tags, device = probabilities.size(-1), probabilities.device
    zeros = torch.zeros(num_tags, device=device)
    paths, _ = CRF.viterbi_scores(probabilities.clamp_min(1e-12).log(), mask,
                                  torch.zeros(num_tags, num_tags, device=device), zeros, zeros, allowed, allowed_start)
    return paths, _chosen(probabilities, paths)


def _chosen(probabilities: Tensor, paths: list[list[int]]) -> list[list[float]]:
    """The probability of each path's tag at each word."""
    scores = []
    for row, path in enumerate(paths):
        index = torch.tensor(path, device=probabilities.device)
        scores.append(probabilities[row, torch.arange(len(path), device=probabilities.device), index].tolist())
    return scores
