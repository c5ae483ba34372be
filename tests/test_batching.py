"""Collator padding and the length-bucketing batch sampler."""

import random

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlp_rnn.batching import BucketBatchSampler, Collator, EncodedDataset

lengths_lists = st.lists(st.integers(1, 60), min_size=1, max_size=200)
samplers = st.fixed_dictionaries({
    "batch_size": st.integers(1, 16),
    "max_tokens": st.one_of(st.none(), st.integers(1, 200)),
    "shuffle": st.booleans(),
    "bucket_size": st.integers(1, 5),
    "seed": st.integers(0, 1000),
})


def padded_tokens(batch: list[int], lengths: list[int]) -> int:
    return len(batch) * max(lengths[i] for i in batch)


# --- Collator -----------------------------------------------------------------------------------------


def test_collator_pads_with_zero_and_builds_lengths_and_mask():
    examples = [{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8], "label": 0},
                {"input_ids": [9, 10], "label": 1}]
    batch = Collator(pad_id=0)(examples)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert batch.lengths.tolist() == [3, 1, 2]
    assert batch.lengths.dtype == torch.int64 and batch.lengths.device.type == "cpu"
    assert batch.input_ids.dtype == torch.int64
    assert batch.mask.dtype == torch.bool
    assert torch.equal(batch.mask, batch.input_ids != 0)  # no real token is 0 here
    assert batch.labels.tolist() == [1, 0, 1]
    assert batch.num_tokens == 6


@given(st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=12), min_size=1, max_size=8))
@settings(max_examples=50, deadline=None)
def test_collator_mask_matches_lengths(rows):
    batch = Collator(pad_id=0)([{"input_ids": row} for row in rows])
    assert batch.labels is None
    assert batch.lengths.tolist() == [len(row) for row in rows]
    assert batch.input_ids.shape == (len(rows), max(map(len, rows)))
    assert torch.equal(batch.mask.sum(1), batch.lengths)
    for row, ids in enumerate(rows):
        assert batch.input_ids[row, : len(ids)].tolist() == ids
        assert batch.mask[row, : len(ids)].all() and not batch.mask[row, len(ids) :].any()
    assert (batch.input_ids[~batch.mask] == 0).all()


def test_batch_to_keeps_lengths_on_the_cpu():
    batch = Collator()([{"input_ids": [1, 2], "label": 0}]).to("cpu")
    assert batch.lengths.device.type == "cpu"
    assert batch.labels.tolist() == [0]


def test_encoded_dataset_items_and_lengths():
    dataset = EncodedDataset([[1, 2, 3], [4]], [1, 0])
    assert len(dataset) == 2
    assert dataset[0] == {"input_ids": [1, 2, 3], "label": 1}
    assert dataset.lengths() == [3, 1]
    assert "label" not in EncodedDataset([[1]])[0]


# --- BucketBatchSampler -------------------------------------------------------------------------------


@given(lengths_lists, samplers, st.integers(0, 5))
@settings(max_examples=100, deadline=None)
def test_every_index_once_per_epoch(lengths, options, epoch):
    sampler = BucketBatchSampler(lengths, **options)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert all(batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert len(sampler) == len(batches)


@given(lengths_lists, samplers, st.integers(0, 5))
@settings(max_examples=100, deadline=None)
def test_order_is_a_function_of_seed_and_epoch(lengths, options, epoch):
    first, second = BucketBatchSampler(lengths, **options), BucketBatchSampler(lengths, **options)
    first.set_epoch(epoch)
    list(second)  # iterating other epochs first must not matter
    second.set_epoch(epoch + 1)
    list(second)
    second.set_epoch(epoch)
    assert list(first) == list(second)


def test_epochs_differ():
    lengths = [random.Random(0).randint(1, 50) for _ in range(200)]
    sampler = BucketBatchSampler(lengths, batch_size=8, bucket_size=2, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]
    other_seed = BucketBatchSampler(lengths, batch_size=8, bucket_size=2, seed=4)
    assert list(other_seed) != orders[0]


@given(lengths_lists, st.integers(1, 200), st.booleans(), st.integers(1, 5), st.integers(0, 100))
@settings(max_examples=100, deadline=None)
def test_max_tokens_bounds_padded_batch_size(lengths, max_tokens, shuffle, bucket_size, seed):
    sampler = BucketBatchSampler(lengths, batch_size=4, max_tokens=max_tokens, shuffle=shuffle,
                                 bucket_size=bucket_size, seed=seed)
    for batch in sampler:
        alone_and_too_long = len(batch) == 1 and lengths[batch[0]] > max_tokens
        assert padded_tokens(batch, lengths) <= max_tokens or alone_and_too_long


@given(lengths_lists, samplers, st.integers(0, 3), st.data())
@settings(max_examples=100, deadline=None)
def test_resuming_at_batch_k_skips_exactly_the_first_k(lengths, options, epoch, data):
    sampler = BucketBatchSampler(lengths, **options)
    sampler.set_epoch(epoch)
    full = list(sampler)
    start = data.draw(st.integers(0, len(full)))
    sampler.set_epoch(epoch, start=start)
    assert list(sampler) == full[start:]
    assert len(sampler) == len(full) - start


def test_without_shuffle_batches_are_sorted_by_length():
    lengths = [5, 1, 4, 2, 3, 6, 1]
    batches = list(BucketBatchSampler(lengths, batch_size=3, shuffle=False))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths)
    assert [len(b) for b in batches] == [3, 3, 1]


def test_bucketing_reduces_padding():
    rng = random.Random(0)
    lengths = [rng.randint(1, 400) for _ in range(2000)]
    real = sum(lengths)

    def padding(batches):
        return sum(padded_tokens(batch, lengths) for batch in batches) - real

    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    random_batches = [indices[i : i + 32] for i in range(0, len(indices), 32)]
    bucketed = list(BucketBatchSampler(lengths, batch_size=32, bucket_size=50, seed=0))
    unbucketed = list(BucketBatchSampler(lengths, batch_size=32, bucket_size=1, seed=0))
    assert padding(bucketed) < 0.1 * padding(random_batches)
    assert padding(bucketed) < 0.1 * padding(unbucketed)


def test_pair_collator_pads_and_shifts_the_target():
    from nlp_rnn.batching import PairCollator

    batch = PairCollator(0)([{"src": [5, 6, 3], "tgt": [2, 7, 8, 9, 3]}, {"src": [4, 3], "tgt": [2, 7, 3]}])
    assert batch.src.tolist() == [[5, 6, 3], [4, 3, 0]] and batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[2, 7, 8, 9], [2, 7, 3, 0]]  # tgt[:, :-1]
    assert batch.tgt_out.tolist() == [[7, 8, 9, 3], [7, 3, 0, 0]]  # tgt[:, 1:]
    assert batch.tgt_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.num_tokens == 6 and batch.src_lengths.device.type == "cpu"


def test_pairs_bucket_on_source_then_target_length():
    from nlp_rnn.batching import PairDataset

    pairs = PairDataset([[1] * n for n in (5, 2, 5, 2)], [[1] * n for n in (9, 3, 4, 8)])
    assert pairs.lengths() == [9, 3, 5, 8]
    sampler = BucketBatchSampler(pairs.lengths(), batch_size=2, shuffle=False, sort_keys=pairs.sort_keys())
    assert sampler.batches() == [[1, 3], [2, 0]]  # (2, 3), (2, 8) | (5, 4), (5, 9)
