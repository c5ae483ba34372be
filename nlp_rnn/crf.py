"""A linear-chain conditional random field over per-token emission scores (Lafferty et al. 2001; the tagging
layer of Lample et al. 2016): the forward algorithm for the log partition (the loss), forward-backward for
per-token marginals, and Viterbi decoding, kept apart from the loss. Batched and masked: rows are padded at
the end, and a padded position never changes a score (tested against enumerating every tag path).

A path y_1..y_n over emissions E scores ``start[y_1] + sum_t E[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_n]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# A forbidden transition's score: low enough that no path through it wins, finite so no NaN appears.
FORBIDDEN = -1e4


class CRF(nn.Module):
    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # (from, to)
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """emissions (batch, len, tags), tags (batch, len) int64, mask (batch, len) bool -> (batch,) scores."""
        mask_f = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (batch, len)
        score = self.start[tags[:, 0]] + (emitted * mask_f).sum(1)
        moves = self.transitions[tags[:, :-1], tags[:, 1:]]  # (batch, len - 1)
        score = score + (moves * mask_f[:, 1:]).sum(1)
        last = mask.long().sum(1) - 1  # (batch,)
        return score + self.end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]

    def _forward_scores(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """alpha (batch, len, tags): log-sum of every prefix path ending in each tag; carried over padding."""
        alpha = self.start + emissions[:, 0]  # (batch, tags)
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]  # (batch, tags)
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
            alphas.append(alpha)
        return torch.stack(alphas, 1)

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z (batch,): the forward algorithm."""
        return torch.logsumexp(self._forward_scores(emissions, mask)[:, -1] + self.end, dim=1)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of the gold paths, (batch,)."""
        return self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """P(y_t = k | x) (batch, len, tags) by forward-backward; zero at padded positions."""
        alphas = self._forward_scores(emissions, mask)
        lengths = mask.long().sum(1)
        beta = self.end.expand(emissions.size(0), -1)  # (batch, tags), at each row's last real position
        betas = [beta] * emissions.size(1)
        for t in range(emissions.size(1) - 2, -1, -1):
            # beta_t(i) = logsumexp_j trans[i, j] + E[t+1, j] + beta_{t+1}(j), restarted at each row's end
            step = torch.logsumexp(self.transitions + (emissions[:, t + 1] + betas[t + 1]).unsqueeze(1), dim=2)
            at_end = (lengths - 1 == t).unsqueeze(1)
            betas[t] = torch.where(mask[:, t + 1].unsqueeze(1), step, torch.where(at_end, beta, betas[t + 1]))
        log_z = torch.logsumexp(alphas[:, -1] + self.end, dim=1)  # (batch,)
        marginal = (alphas + torch.stack(betas, 1) - log_z.view(-1, 1, 1)).exp()
        return marginal * mask.unsqueeze(-1)

    def viterbi(self, emissions: Tensor, mask: Tensor, allowed: Tensor | None = None,
                allowed_start: Tensor | None = None) -> tuple[list[list[int]], Tensor]:
        """The best path of each row (its own length) and its score. ``allowed`` (tags, tags) bool and
        ``allowed_start`` (tags,) bool forbid transitions at decoding only (e.g. IOB2's I-X after O)."""
        return self.viterbi_scores(emissions, mask, self.transitions, self.start, self.end, allowed, allowed_start)

    @staticmethod
    def viterbi_scores(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor,
                       allowed: Tensor | None = None,
                       allowed_start: Tensor | None = None) -> tuple[list[list[int]], Tensor]:
        """Viterbi over given scores: emissions (batch, len, tags), transitions (tags, tags), start and end (tags,).
        A softmax tagger decodes its log-probabilities with zero transitions to keep IOB2 paths valid."""
        if allowed is not None:
            transitions = transitions.masked_fill(~allowed.to(transitions.device), FORBIDDEN)
        if allowed_start is not None:
            start = start.masked_fill(~allowed_start.to(start.device), FORBIDDEN)
        score = start + emissions[:, 0]  # (batch, tags)
        backpointers = []
        for t in range(1, emissions.size(1)):
            best, index = (score.unsqueeze(2) + transitions).max(dim=1)  # (batch, tags) each
            keep = mask[:, t].unsqueeze(1)
            score = torch.where(keep, best + emissions[:, t], score)
            backpointers.append(index)
        best_score, last = (score + end).max(dim=1)
        lengths = mask.long().sum(1).tolist()
        pointers = torch.stack(backpointers, 1).tolist() if backpointers else []  # (batch, len - 1, tags)
        last = last.tolist()
        paths = []
        for row, length in enumerate(lengths):
            tag = last[row]
            path = [tag]
            for t in range(length - 2, -1, -1):
                tag = pointers[row][t][tag]
                path.append(tag)
            paths.append(path[::-1])
        return paths, best_score
