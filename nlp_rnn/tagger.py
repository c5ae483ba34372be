"""The sequence tagger: word embedding + a character CNN per word (Ma & Hovy 2016; Lample et al. 2016 use a
char BiLSTM) -> the shared recurrent encoder -> dropout -> a linear layer per token -> softmax or a CRF
(flair's ``SequenceTagger``). ``forward`` gives emissions and the loss; decoding (:meth:`decode`) is apart."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nlp_rnn.crf import CRF
from nlp_rnn.encoder import RecurrentEncoder


@dataclass
class TagBatch:
    input_ids: Tensor  # (batch, len) word ids, padded with 0
    char_ids: Tensor  # (batch, len, max_chars) character ids, padded with 0
    lengths: Tensor  # (batch,) int64, on the CPU
    mask: Tensor  # (batch, len) bool, True at real tokens
    tags: Tensor | None = None  # (batch, len) int64, 0 at padding (masked)

    def to(self, device: torch.device | str) -> TagBatch:
        tags = None if self.tags is None else self.tags.to(device, non_blocking=True)
        return TagBatch(self.input_ids.to(device, non_blocking=True), self.char_ids.to(device, non_blocking=True),
                        self.lengths, self.mask.to(device, non_blocking=True), tags)

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
        flat = char_ids.view(batch * length, chars)  # (words, chars)
        features = self.conv(self.embedding(flat).transpose(1, 2))  # (words, filters, chars)
        features = features.masked_fill((flat == 0).unsqueeze(1), float("-inf")).max(dim=2).values
        features = torch.where(torch.isinf(features), torch.zeros_like(features), features)  # words with no chars
        return features.view(batch, length, -1)


class SequenceTagger(nn.Module):
    def __init__(self, config, vocab_size: int, num_chars: int, num_tags: int, pad_id: int = 0) -> None:
        super().__init__()
        self.word_embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_id)
        self.chars = CharCNN(num_chars, config.char_embedding_dim, config.char_filters, config.char_kernel_size)
        input_size = config.embedding_dim + self.chars.output_size
        self.encoder = RecurrentEncoder(1, input_size, config.hidden_size, cell=config.cell,
                                        num_layers=config.num_layers, bidirectional=config.bidirectional,
                                        dropout=config.dropout, embedding_dropout=config.embedding_dropout,
                                        packed=config.packed)
        self.encoder.embedding = None  # words and characters are embedded here; the encoder reads them embedded
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = CRF(num_tags) if config.output == "crf" else None

    def emissions(self, batch: TagBatch) -> Tensor:
        """(batch, len, num_tags) per-token tag scores."""
        embedded = torch.cat([self.word_embedding(batch.input_ids), self.chars(batch.char_ids)], dim=-1)
        encoded = self.encoder.encode_embedded(embedded, batch.lengths).outputs  # (batch, len, dirs * hidden)
        return self.head(self.dropout(encoded))

    def forward(self, batch: TagBatch, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> (emissions (batch, len, tags), loss): the CRF's mean negative log-likelihood per sentence, or the
        softmax's cross-entropy per token; padding never counts."""
        emissions = self.emissions(batch)
        if targets is None:
            return emissions, None
        if self.crf is not None:
            return emissions, self.crf.nll(emissions.float(), targets, batch.mask).mean()
        loss = nn.functional.cross_entropy(emissions[batch.mask].float(), targets[batch.mask])
        return emissions, loss

    def decode(self, emissions: Tensor, mask: Tensor, allowed: Tensor | None = None,
               allowed_start: Tensor | None = None) -> tuple[list[list[int]], list[list[float]]]:
        """Each row's tags (Viterbi for a CRF, else the argmax) and each tag's probability (CRF marginals)."""
        emissions = emissions.float()
        lengths = mask.long().sum(1).tolist()
        if self.crf is None:
            probabilities, best = emissions.softmax(-1).max(-1)
        else:
            paths, _ = self.crf.viterbi(emissions, mask, allowed, allowed_start)
            best = torch.zeros(mask.shape, dtype=torch.long, device=emissions.device)
            for row, path in enumerate(paths):
                best[row, : len(path)] = torch.tensor(path, device=emissions.device)
            probabilities = self.crf.marginals(emissions, mask).gather(2, best.unsqueeze(-1)).squeeze(-1)
        tags = [best[row, :n].tolist() for row, n in enumerate(lengths)]
        return tags, [probabilities[row, :n].tolist() for row, n in enumerate(lengths)]
