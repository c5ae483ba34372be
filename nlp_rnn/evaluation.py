"""Batched inference and scores: classification metrics, and sacreBLEU / chrF / TER for translations."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from nlp_rnn.batching import BucketBatchSampler, Collator, EncodedDataset
from nlp_rnn.metrics import classification_report
from nlp_rnn.runtime import native_bf16
from nlp_rnn.tokenization import PAD_ID


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast for evaluation and prediction: on CUDA only. A CPU evaluates and predicts in float32, so the
    scores a run reports are those of the float32 model it saves and serves, the same batched or one by one."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def training_autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast for training steps where ``device`` computes in bf16 natively
    (:func:`nlp_rnn.runtime.native_bf16`: CUDA, CPUs with AVX-512 BF16 or AMX), else a no-op context: emulated
    bf16 would be slower than float32. The weights stay float32; only the matrix products run in bf16."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and native_bf16(device))


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: EncodedDataset, batch_size: int, device: torch.device,
                   amp: bool = True, progress: str | None = None) -> torch.Tensor:
    """Logits (num_examples, num_labels) in dataset order; batches are sorted by length for speed. ``progress``:
    the description of a progress bar over the examples (none without it)."""
    was_training = model.training
    model.eval()
    sampler = BucketBatchSampler(dataset.lengths(), batch_size, shuffle=False)
    collate = Collator(PAD_ID)
    logits = torch.empty(len(dataset), model.num_labels)
    with tqdm(total=len(dataset), desc=progress, unit="texts", disable=progress is None, dynamic_ncols=True,
              leave=False) as bar:
        for indices in sampler:
            batch = collate([dataset[i] for i in indices]).to(device)
            with autocast(device, amp):
                batch_logits, _ = model(batch)
            logits[indices] = batch_logits.float().cpu()
            bar.update(len(indices))
    model.train(was_training)
    return logits


def evaluate_classifier(model: nn.Module, dataset: EncodedDataset, label_names: Sequence[str], batch_size: int,
                        device: torch.device, amp: bool = True, temperature: float | None = None) -> dict:
    """Loss, accuracy, macro-F1, per-class scores, confusion matrix and examples/s on labelled data; with a
    ``temperature``, also NLL and expected calibration error before and after dividing the logits by it."""
    from nlp_rnn.calibration import calibration_report

    start = time.perf_counter()
    logits = predict_logits(model, dataset, batch_size, device, amp)
    seconds = time.perf_counter() - start
    labels = torch.as_tensor(dataset.labels, dtype=torch.long)
    report = classification_report(logits.argmax(-1).tolist(), labels.tolist(), label_names)
    report["loss"] = F.cross_entropy(logits, labels).item()
    report["examples_per_second"] = len(dataset) / seconds if seconds > 0 else float("inf")
    if temperature is not None:
        report["calibration"] = calibration_report(logits, labels, temperature)
    return report


def score_translations(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """sacreBLEU on detokenized, cased text (default 13a tokenization), chrF and TER, each with its
    signature; plus lowercased BLEU, only for comparison with tutorials that report it."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    hypotheses, refs = list(hypotheses), [list(references)]
    bleu, chrf, ter, lower = BLEU(), CHRF(), TER(), BLEU(lowercase=True)
    scores = {"bleu": bleu.corpus_score(hypotheses, refs), "chrf": chrf.corpus_score(hypotheses, refs),
              "ter": ter.corpus_score(hypotheses, refs), "bleu_lowercase": lower.corpus_score(hypotheses, refs)}
    signatures = {"bleu": bleu.get_signature(), "chrf": chrf.get_signature(), "ter": ter.get_signature(),
                  "bleu_lowercase": lower.get_signature()}
    report = {name: score.score for name, score in scores.items()}
    report["signature"] = {name: str(signature) for name, signature in signatures.items()}
    report["bleu_details"] = str(scores["bleu"])
    report["num_sentences"] = len(hypotheses)
    return report
