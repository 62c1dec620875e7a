"""The Q-Former baseline: learned queries read the vision tokens outside the LM; the LM keeps the queries' KV."""

import torch

from voco.compressors.qformer import QFormer
from voco.tiny import tiny_model


def test_untrained_qformer_starts_as_pooling():
    """Identity value/out projections and zero residual branches: a segment of one repeated token u gives
    queries + u (an attention-weighted average of identical tokens is the token)."""
    torch.manual_seed(0)
    qformer = QFormer(hidden=32, queries=3)
    u = torch.randn(32)
    out = qformer(u.expand(2, 7, 32))  # [B, n, hidden] -> [B, m, hidden]
    assert out.shape == (2, 3, 32)
    torch.testing.assert_close(out, (qformer.queries + u).expand(2, 3, 32))


def test_queries_read_the_vision_tokens_as_a_set():
    """Cross-attention without positions: reordering the vision tokens changes nothing; changing one does."""
    torch.manual_seed(1)
    qformer = QFormer(hidden=48, queries=2)
    for p in qformer.parameters():  # a trained-looking stack, not the pooling start
        torch.nn.init.normal_(p, std=0.2)
    vision = torch.randn(3, 10, 48)
    with torch.no_grad():
        out = qformer(vision)
        torch.testing.assert_close(qformer(vision[:, torch.randperm(10)]), out)
        other = vision.clone()
        other[:, 4] += 1.0
        assert float((qformer(other) - out).abs().max()) > 1e-3


def test_qformer_model_keeps_k_query_tokens_and_leaves_the_rng_alone(make_segments):
    tiny_model("llama")
    after_voco = torch.rand(4)
    model = tiny_model("llama", compressor="qformer", k=3)
    assert torch.equal(torch.rand(4), after_voco)  # its own init seed: the other rows' later draws are unchanged
    caches = model.compress(make_segments(2))
    assert [(c.compressor, c.k, c.source_position) for c in caches] == [("qformer", 3, 1)] * 2
    assert model.compressor.kept_tokens(32) == 3 and "3 Q-Former query token(s)" in model.compressor.describe(32)
    assert "qformer.queries" in model.state_dict()  # part of the model identity, like pool's linear
