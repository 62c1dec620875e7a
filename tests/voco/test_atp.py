"""ATP (voco/compressors/atp/pruning.py): two-stage ragged caches against the single-pass per-layer block-mask
reference, and the pruning rule's own contracts (placement, budgets, grid, soft masks and their gradients)."""

import numpy as np
import pytest
import torch

import voco.cache as voco_cache
from voco.cache import RaggedSegmentCache
from voco.compressors.atp.pruning import AtpRun, Groups, atp_layers, grid_sample, module_targets
from voco.compressors.atp.reference import atp_reference_logits, atp_single_pass_logits
from voco.key_bias import StaticKeyBias, use_key_bias_attention
from voco.tiny import tiny_config, tiny_model

QUESTION = "what color is the circle that moves left?"
TOL = 1e-5  # fp32 rounding: measured max |diff| ~1.5e-7


def _atp_model(lm="llama", layers=4, compressor="atp", k=30, seed=1):
    model = tiny_model(config=tiny_config(lm, layers=layers), compressor=compressor, k=k, seed=seed)
    torch.manual_seed(seed)
    for mlp in model.compressor.module.mlps:  # a trained pruner: thresholds move with each segment's scores
        torch.nn.init.normal_(mlp.out.weight, std=0.5)
    return model


@pytest.mark.parametrize("lm,layers", [("llama", 4), ("qwen2", 2)])
@pytest.mark.parametrize("k", [10, 30])
@pytest.mark.parametrize("T", [1, 3])
def test_atp_ragged_two_stage_matches_reference(lm, layers, k, T, make_segments):
    model = _atp_model(lm, layers, k=k)
    segments = make_segments(T, seed=T)
    caches = model.compress(segments, batch_size=2)
    lengths = torch.stack([c.lengths for c in caches])  # [T, layers]
    n = caches[0].span
    assert (lengths < n).any() and len(set(lengths[:, -1].tolist()) | set(lengths[0].tolist())) > 1  # ragged
    diff = (model.next_token_logits(QUESTION, caches) - atp_reference_logits(model, QUESTION, segments)).abs().max()
    assert float(diff) < TOL


def test_atp_voco_two_stage_matches_reference(make_segments):
    model = _atp_model(compressor="atp+voco", k=2)
    segments = make_segments(3, seed=2)
    caches = model.compress(segments)
    assert caches[0].kv.shape[3] == 2  # dense: the <voco> tokens only
    diff = (model.next_token_logits(QUESTION, caches) - atp_reference_logits(model, QUESTION, segments)).abs().max()
    assert float(diff) < TOL


@torch.no_grad()
def test_atp_greedy_decoding_matches_reference(make_segments):
    """Every decoding step over padded ragged layers equals the single pass re-run with the new tokens."""
    model = _atp_model(k=20)
    segments = make_segments(2, seed=5)
    caches = model.compress(segments)
    prefix_ids, suffix_ids = model.prompt_ids(QUESTION)
    past, position = model.past_from_caches(caches, prefix_ids)
    logits = model.forward_tokens(suffix_ids, past, position)[-1]
    position += len(suffix_ids)
    tokens = []
    for _ in range(6):
        token = int(logits.argmax())
        ref = atp_single_pass_logits(model, prefix_ids, segments, suffix_ids + tokens)[-1]
        assert float((logits - ref).abs().max()) < TOL
        tokens.append(token)
        logits = model.forward_tokens([token], past, position)[-1]
        position += 1


def test_parity_catches_a_misplaced_ragged_token(make_segments, monkeypatch):
    """A bug in the ragged placement (one position off) shows as a parity failure."""
    model = _atp_model(k=30)
    segments = make_segments(2, seed=3)
    caches = model.compress(segments)
    shift = voco_cache.shift_keys
    monkeypatch.setattr(voco_cache, "shift_keys", lambda keys, delta, inv: shift(keys, delta + 1, inv))
    diff = (model.next_token_logits(QUESTION, caches) - atp_reference_logits(model, QUESTION, segments)).abs().max()
    assert float(diff) > 10 * TOL


def test_pruned_tokens_are_absent_and_keep_their_positions(make_segments):
    model = _atp_model(k=10)
    cache = model.compress(make_segments(1, seed=4))[0]
    n = cache.span
    assert cache.lengths[0] < n  # the first module sits before layer 0 in a 4-layer LM
    for i in range(cache.layers):
        kv, positions = cache.layer(i)
        assert kv.shape[0] == cache.lengths[i] and positions.min() >= 1 and positions.max() <= n
        assert torch.equal(positions, positions.sort().values)
        if i:  # nested: a token pruned at one layer never comes back
            assert set(positions.tolist()) <= set(cache.layer(i - 1)[1].tolist())


def test_placement_and_budget_targets():
    assert atp_layers(32) == (4, 14, 24) and atp_layers(4) == (0, 1, 3) and atp_layers(2) == (0, 1)
    for layers in (4, 32):
        for budget in (0.1, 0.2, 0.3):
            if budget <= atp_layers(layers)[0] / layers:
                continue
            targets, cover = module_targets(layers, budget)
            lead = atp_layers(layers)[0] / layers
            assert abs(float(lead + (targets * cover).sum()) - budget) < 1e-6
            assert (targets[1:] <= targets[:-1]).all()  # deeper modules keep fewer
    with pytest.raises(ValueError, match="raise the budget"):
        module_targets(32, 0.1)  # layers 0..3 keep everything: 12.5% already


def test_grid_sample_is_a_uniform_2d_grid():
    grid = grid_sample(frames=2, n=2 * 64, budget=0.3)
    assert grid.shape == (128,) and int(grid.sum()) == 2 * 16  # stride 2 on an 8x8 grid, both frames
    assert int(grid_sample(1, 64, 0.1).sum()) == 4  # stride 4
    with pytest.raises(ValueError, match="square"):
        grid_sample(1, 60, 0.3)


def test_soft_masks_carry_the_budget_gradient_to_the_threshold_mlps(make_segments):
    model = _atp_model(k=20).train()
    vision = model.vision_embeds(make_segments(3, seed=6))
    compressed = model.compressor.compress_for_training(model, vision)
    assert compressed.key_mask.shape == (3, 4, vision.shape[1])
    assert ((compressed.key_mask > 0) & (compressed.key_mask < 1)).any()  # soft, not hard
    loss = compressed.aux["atp_budget"] + compressed.kv.pow(2).mean()
    loss.backward()
    first = model.compressor.module.mlps[0]  # the first module's thresholds shape every later layer's mask
    assert first.fc.weight.grad is not None and first.fc.weight.grad.abs().sum() > 0
    assert first.out.bias.grad.abs().sum() > 0


def test_hard_run_keeps_at_least_one_token_per_layer():
    torch.manual_seed(0)
    model = _atp_model(k=10)
    use_key_bias_attention(model.lm)
    for mlp in model.compressor.module.mlps:
        torch.nn.init.constant_(mlp.out.bias, 50.0)  # thresholds above every score
    groups = Groups.one_per_row(2, 16, 3)
    run = AtpRun(model.compressor.module, 4, 0.3, groups, torch.zeros(16, dtype=torch.bool), soft=False)
    q, k = torch.randn(2, 4, 20, 16), torch.randn(2, 2, 20, 16)
    for layer in range(4):
        run(layer, q, k)
    assert (run.layer_masks().sum(-1) == 1).all()


def test_key_bias_attention_without_bias_is_sdpa_and_masks_exactly():
    model = tiny_model(config=tiny_config("llama", layers=2))
    ids = torch.randint(5, 100, (2, 9))
    before = model.lm(input_ids=ids).logits
    use_key_bias_attention(model.lm)
    assert torch.equal(model.lm(input_ids=ids).logits, before)
    bias = torch.zeros(2, 9)
    bias[:, 3] = float("-inf")
    out = model.lm(input_ids=ids, key_bias=StaticKeyBias([bias, bias])).logits
    assert torch.equal(out[:, :3], before[:, :3]) and (out[:, 3:] - before[:, 3:]).abs().max() > 1e-4


def test_ragged_cache_bytes_round_trip(make_segments):
    model = _atp_model(k=20)
    cache = model.compress(make_segments(1, seed=7))[0]
    again = RaggedSegmentCache.from_bytes(cache.to_bytes())
    assert torch.equal(again.kv, cache.kv) and torch.equal(again.lengths, cache.lengths)
    assert torch.equal(again.positions, cache.positions)
    assert (again.source_position, again.span, again.fingerprint, again.compressor) == (
        cache.source_position, cache.span, cache.fingerprint, cache.compressor)
    with pytest.raises(ValueError, match="sum to"):
        RaggedSegmentCache(cache.kv[:-1], cache.lengths, cache.positions[:-1], 1, cache.span, "f", "atp")


@torch.no_grad()
def test_eval_mode_training_path_reads_exactly_what_is_stored(make_segments):
    """Validation and test scoring (voco.train.forward, model in eval mode: hard masks as key biases over every
    vision token) give the logits of the stored ragged caches."""
    from voco.train.forward import build_timeline, rows_logits

    model = _atp_model(k=20).eval()
    segments = make_segments(3, seed=8)
    prefix_ids, suffix_ids = model.prompt_ids(QUESTION)
    compressed = model.compressor.compress_for_training(model, model.vision_embeds(segments))
    assert set(compressed.key_mask.unique().tolist()) == {0.0, 1.0}
    timeline = build_timeline(model, compressed.kv, compressed.layout, [3], prefix_ids, compressed.key_mask)
    batched = rows_logits(model, timeline, [0], [suffix_ids])[0, -1].float()
    stored = model.next_token_logits(QUESTION, model.compress(segments))
    assert float((batched - stored).abs().max()) < TOL


def test_question_time_variant_and_search_vectors(make_segments):
    """A question known first replaces the fixed instruction in the cross-modality score (other kept sets, same
    answering path); ragged caches give search vectors like dense ones (voco.search)."""
    from voco.search import VoCoKeyEmbedder

    model = _atp_model(k=30)
    segments = make_segments(3, seed=9)
    stored = model.compress(segments)
    with torch.inference_mode():
        asked = model.compressor.compress_batch(model, model.vision_embeds(segments), model.fingerprint,
                                                question=QUESTION)
    assert any(not torch.equal(a.positions, b.positions) for a, b in zip(asked, stored, strict=True))
    assert torch.isfinite(model.next_token_logits(QUESTION, asked)).all()
    vectors = VoCoKeyEmbedder(model).segment_vectors(stored)
    assert vectors.shape == (3, VoCoKeyEmbedder(model).dim) and np.isfinite(vectors).all()


def _importance_by_loops(query: torch.Tensor, key: torch.Tensor, vision: list[int], text: list[int]) -> np.ndarray:
    """ATP's importance written out token by token (voco/compressors/atp/pruning.py module doc), sharing no code
    with `AtpRun`: the attention mass each vision token receives from the vision queries (softmax over vision keys)
    and from the text queries, each averaged over heads and queries, times the number of vision tokens, then the mean
    of the two."""
    q, k = query[0].double().numpy(), key[0].double().numpy()  # [H, seq, D]
    heads, n, scale = q.shape[0], len(vision), q.shape[-1] ** -0.5
    received = {"self": np.zeros(n), "cross": np.zeros(n)}
    for part, queries in (("self", vision), ("cross", text)):
        for h in range(heads):
            for i in queries:
                logits = np.array([q[h, i] @ k[h, j] * scale for j in vision])
                weights = np.exp(logits - logits.max())
                received[part] += weights / weights.sum() / (heads * len(queries))
    return 0.5 * (received["self"] + received["cross"]) * n


def _check_pruning_keeps_what_attention_reads_most(mutate=None) -> None:
    """A hard ATP step on fixed random queries and keys must keep exactly the tokens whose importance, computed
    independently of `AtpRun`, is above the mean log importance. `mutate(scores)` replaces the run's (self, cross)
    scores: the check must then fail (see the test below)."""
    torch.manual_seed(3)
    n, m, heads, dim = 16, 3, 2, 8
    query, key = torch.randn(1, heads, 1 + n + m, dim), torch.randn(1, heads, 1 + n + m, dim) * 2
    groups = Groups.one_per_row(1, n, m)
    run = AtpRun(torch.nn.Module(), num_layers=4, budget=0.5, groups=groups, grid=torch.zeros(1, n), soft=False)
    run.thresholds = lambda j, *_: torch.tensor([[0.0, 9.0]])  # z > 0: above the mean log score (no spatial)
    if mutate is not None:
        scores = run.scores
        run.scores = lambda q, k: mutate(scores(q, k))
    run.prune(0, query, key)
    kept = (run.mask[0] > 0.5).numpy()
    importance = _importance_by_loops(query, key, list(range(1, 1 + n)), list(range(1 + n, 1 + n + m)))
    assert 2 <= kept.sum() <= n - 2
    assert importance[kept].min() > importance[~kept].max()
    log_s = np.log(importance)
    assert set(np.flatnonzero(kept)) == set(np.flatnonzero(log_s > log_s.mean()))


def test_pruning_keeps_the_tokens_attention_reads_most():
    """A hard ATP step keeps exactly the most important vision tokens, by an importance computed independently of
    `AtpRun` (an inverted ranking, keeping the least read tokens, passes the parity tests but fails here)."""
    _check_pruning_keeps_what_attention_reads_most()


@pytest.mark.parametrize("ranking", ["inverted", "random"])
def test_the_pruning_check_fails_on_a_wrong_ranking(ranking):
    """The check above is not vacuous: with the run's importance inverted (the least read tokens first) or replaced
    by random scores, it fails."""
    generator = torch.Generator().manual_seed(0)

    def mutate(scores):
        if ranking == "inverted":
            return tuple(1.0 / s for s in scores)
        return tuple(torch.rand(s.shape, generator=generator) for s in scores)

    with pytest.raises(AssertionError):
        _check_pruning_keeps_what_attention_reads_most(mutate)
