"""Greedy and batched beam search, built only on ``model.encode`` and ``model.decode_step``.

Every sentence stops at ``</s>`` or at its own length limit, ``min(max_output_length, ceil(ratio *
source_length) + 5)`` tokens, so no input can make decoding run forever. Beam search keeps ``beam_size``
hypotheses per sentence, ranks finished ones by the GNMT length-normalised score (Wu et al. 2016)
``log p(y) / ((5 + |y|) / 6) ** alpha``, ends a sentence once its best hypothesis has emitted ``</s>`` (and
``n_best`` have finished), and drops finished sentences from the batch so they cost nothing more.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from nlp_rnn.tokenization import BOS_ID, EOS_ID


class Hypothesis(NamedTuple):
    tokens: list[int]  # without <s> and </s>
    score: float  # greedy: sum of log-probabilities; beam: that sum / length penalty
    attention: Tensor | None  # (len(output_ids), src_len) when asked for
    ended: bool  # emitted </s> (else it stopped at its length limit)

    @property
    def output_ids(self) -> list[int]:
        """Every generated id, ``</s>`` included when it ended: one per attention row."""
        return self.tokens + [EOS_ID] if self.ended else self.tokens


def output_limits(src_lengths: Tensor, max_length_ratio: float, max_output_length: int) -> list[int]:
    """Most tokens each sentence may produce, </s> included."""
    return [min(max_output_length, math.ceil(max_length_ratio * int(n)) + 5) for n in src_lengths.tolist()]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def _hypothesis(tokens: list[int], score: float, attention: Tensor | None, src_length: int) -> Hypothesis:
    ended = bool(tokens) and tokens[-1] == EOS_ID
    kept = tokens[:-1] if ended else tokens
    if attention is not None:
        attention = attention[: len(tokens), :src_length].cpu()
    return Hypothesis(kept, score, attention, ended)


@torch.no_grad()
def greedy_search(model, src: Tensor, src_lengths: Tensor, max_length_ratio: float = 1.5,
                  max_output_length: int = 256, return_attention: bool = False) -> list[Hypothesis]:
    """The most probable token at every step, for a whole batch. src (batch, src_len) -> one per sentence.

    A sentence leaves the batch once it has ended, so the last steps cost only the longest outputs."""
    batch = src.size(0)
    limits = output_limits(src_lengths, max_length_ratio, max_output_length)
    limit_tensor = torch.tensor(limits, device=src.device)
    source = model.encode(src, src_lengths)
    state = source.initial_state
    active = torch.arange(batch, device=src.device)  # the sentences still decoding, as rows of the input
    tokens = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    attentions: list[list[Tensor]] = [[] for _ in range(batch)]
    for t in range(max(limits)):
        step = model.decode_step(tokens, state, source)
        best, tokens = step.logits.float().log_softmax(-1).max(-1)  # (active,), (active,)
        for index, (row, token, score) in enumerate(zip(active.tolist(), tokens.tolist(), best.tolist(),
                                                        strict=True)):
            outputs[row].append(token)
            scores[row] += score
            if return_attention:
                attentions[row].append(step.attention[index].float())
        done = (tokens == EOS_ID) | (t + 1 >= limit_tensor[active])  # (active,)
        if bool(done.all()):
            break
        state = step.state
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)  # (still active,)
            active, tokens, state, source = active[keep], tokens[keep], state.select(keep), source.select(keep)
    return [_hypothesis(outputs[row], scores[row], torch.stack(attentions[row]) if return_attention else None,
                        int(src_lengths[row])) for row in range(batch)]


@torch.no_grad()
def beam_search(model, src: Tensor, src_lengths: Tensor, beam_size: int = 5, length_penalty_alpha: float = 1.0,
                max_length_ratio: float = 1.5, max_output_length: int = 256, n_best: int = 1,
                return_attention: bool = False) -> list[list[Hypothesis]]:
    """Batched beam search. src (batch, src_len) -> for each sentence its ``n_best`` hypotheses, best first."""
    if n_best > beam_size:
        raise ValueError(f"n_best ({n_best}) cannot exceed beam_size ({beam_size})")
    device = src.device
    batch, width = src.size(0), beam_size
    limits = output_limits(src_lengths, max_length_ratio, max_output_length)
    rows = torch.arange(batch, device=device).repeat_interleave(width)  # (batch * width,)
    source = model.encode(src, src_lengths).select(rows)
    state = source.initial_state
    tokens = torch.full((batch * width,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((batch, width), float("-inf"), device=device)
    scores[:, 0] = 0.0  # every beam starts as the same empty hypothesis: keep one copy alive
    history = torch.empty(batch * width, 0, dtype=torch.long, device=device)  # (active * width, steps)
    attention = torch.empty(batch * width, 0, src.size(1), device=device) if return_attention else None
    active = list(range(batch))  # sentence index of each active row block
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    for t in range(max(limits)):
        step = model.decode_step(tokens, state, source)
        log_probs = step.logits.float().log_softmax(-1)  # (active * width, vocab)
        vocab = log_probs.size(-1)
        candidates = (scores.view(-1, 1) + log_probs).view(len(active), width * vocab)
        scores, flat = candidates.topk(width, dim=-1)  # (active, width)
        origin = (flat // vocab + torch.arange(len(active), device=device).unsqueeze(1) * width).view(-1)
        tokens = (flat % vocab).view(-1)  # (active * width,)
        history = torch.cat([history.index_select(0, origin), tokens.unsqueeze(1)], dim=1)
        if attention is not None:
            attention = torch.cat([attention.index_select(0, origin), step.attention.float()
                                   .index_select(0, origin).unsqueeze(1)], dim=1)
        state = step.state.select(origin)

        ended = (tokens == EOS_ID).view(len(active), width) & scores.isfinite()  # (active, width)
        at_limit = torch.tensor([t + 1 >= limits[s] for s in active], device=device)
        record = ended | (at_limit.unsqueeze(1) & scores.isfinite())
        penalty = length_penalty(t + 1, length_penalty_alpha)
        for a, k in record.nonzero().tolist():
            sentence = active[a]
            row = a * width + k
            finished[sentence].append(_hypothesis(
                history[row].tolist(), float(scores[a, k]) / penalty,
                None if attention is None else attention[row], int(src_lengths[sentence])))
        scores = scores.masked_fill(ended, float("-inf"))  # finished hypotheses leave the beam
        counts = torch.tensor([len(finished[s]) for s in active], device=device)
        done = at_limit | (ended[:, 0] & (counts >= n_best)) | ~scores.isfinite().any(dim=1)
        if bool(done.all()):
            break
        if bool(done.any()):  # prune finished sentences from the batch
            keep = (~done).nonzero().squeeze(1)  # (kept,)
            keep_rows = (keep.unsqueeze(1) * width + torch.arange(width, device=device)).view(-1)
            active = [active[a] for a in keep.tolist()]
            scores = scores.index_select(0, keep)
            tokens, history = tokens.index_select(0, keep_rows), history.index_select(0, keep_rows)
            attention = None if attention is None else attention.index_select(0, keep_rows)
            state, source = state.select(keep_rows), source.select(keep_rows)

    return [sorted(hypotheses, key=lambda h: h.score, reverse=True)[:n_best] for hypotheses in finished]


@torch.no_grad()
def decode_dataset(model, sources: list[list[int]], batch_size: int, device: torch.device, beam_size: int = 1,
                   length_penalty_alpha: float = 1.0, max_length_ratio: float = 1.5, max_output_length: int = 256,
                   n_best: int = 1, return_attention: bool = False) -> list[list[Hypothesis]]:
    """Translate many encoded sources (each ending in ``</s>``) in length-sorted batches; results in input order.

    ``beam_size`` 1 runs greedy search.
    """
    from nlp_rnn.batching import pad
    from nlp_rnn.tokenization import PAD_ID

    was_training = model.training
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[Hypothesis]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        src, src_lengths, _ = pad([sources[i] for i in indices], PAD_ID)
        src = src.to(device)
        if beam_size == 1 and n_best == 1:
            found = [[h] for h in greedy_search(model, src, src_lengths, max_length_ratio, max_output_length,
                                                return_attention)]
        else:
            found = beam_search(model, src, src_lengths, beam_size, length_penalty_alpha, max_length_ratio,
                                max_output_length, n_best, return_attention)
        for index, hypotheses in zip(indices, found, strict=True):
            results[index] = hypotheses
    model.train(was_training)
    return results
