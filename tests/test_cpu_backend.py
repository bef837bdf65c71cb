"""The CPU attention path equals MLX's own kernel, forward and backward, wherever it takes over."""

import mlx.core as mx
import pytest

from synthia.platform import cpu_backend

ORIGINAL = cpu_backend._original


def arrays(heads, kv_heads, n_queries, n_keys, dim=16, seed=0):
    mx.random.seed(seed)
    return (mx.random.normal((2, heads, n_queries, dim)), mx.random.normal((2, kv_heads, n_keys, dim)),
            mx.random.normal((2, kv_heads, n_keys, dim)))


@pytest.mark.parametrize("heads,kv_heads,n_queries,n_keys,mask", [
    (4, 4, 300, 300, "causal"),   # two blocks, the second partial
    (6, 2, 513, 513, "causal"),   # grouped-query heads, three blocks
    (4, 2, 100, 356, "causal"),   # a KV cache: the queries are the last 100 positions
    (4, 1, 200, 200, None),       # no mask: every key visible
])
def test_blocked_attention_equals_mlx(heads, kv_heads, n_queries, n_keys, mask):
    q, k, v = arrays(heads, kv_heads, n_queries, n_keys)
    ours = cpu_backend.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
    reference = ORIGINAL(q, k, v, scale=0.25, mask=mask)
    assert ours.shape == reference.shape
    assert mx.allclose(ours, reference, atol=1e-5).item()

    def loss(fn):
        return lambda q, k, v: (fn(q, k, v, scale=0.25, mask=mask) * mx.arange(q.shape[-1])).sum()

    ours_grads = mx.grad(loss(cpu_backend.scaled_dot_product_attention), argnums=(0, 1, 2))(q, k, v)
    reference_grads = mx.grad(loss(ORIGINAL), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(ours_grads, reference_grads):
        assert mx.allclose(a, b, atol=1e-4).item()


def test_masking_is_causal():
    """A change to a later key must not move an earlier query's output."""
    q, k, v = arrays(2, 2, 300, 300)
    before = cpu_backend.scaled_dot_product_attention(q, k, v, scale=0.5, mask="causal")
    v2 = v.at[:, :, 299].add(100.0)
    after = cpu_backend.scaled_dot_product_attention(q, k, v2, scale=0.5, mask="causal")
    assert mx.array_equal(before[:, :, :299], after[:, :, :299]).item()
    assert not mx.allclose(before[:, :, 299], after[:, :, 299]).item()


def test_other_cases_go_to_mlx(monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_backend, "_original", lambda *a, **kw: calls.append(kw) or "mlx")
    q, k, v = arrays(2, 2, 1, 40)  # decoding one token
    assert cpu_backend.scaled_dot_product_attention(q, k, v, scale=1.0, mask="causal") == "mlx"
    q, k, v = arrays(2, 2, 100, 100)
    array_mask = mx.ones((100, 100), dtype=mx.bool_)
    assert cpu_backend.scaled_dot_product_attention(q, k, v, scale=1.0, mask=array_mask) == "mlx"
    assert cpu_backend.scaled_dot_product_attention(q, k, v, scale=1.0, mask=None, sinks=mx.zeros((2,))) == "mlx"
    assert len(calls) == 3


def test_configure_routes_model_attention(monkeypatch):
    monkeypatch.setattr(mx.fast, "scaled_dot_product_attention", ORIGINAL)
    cpu_backend.configure()
    assert mx.fast.scaled_dot_product_attention is cpu_backend.scaled_dot_product_attention
