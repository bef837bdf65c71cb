"""Llama 3.1's RoPE scaling as llama.cpp stores it: one factor per frequency, the rope_freqs.weight tensor. The
export writes it from config.json's rope_scaling; the import finds rope_scaling again from it."""

# Meta's Llama 3.1+ RoPE scaling parameters besides the factor, which a GGUF keeps only as rope_freqs.weight.
LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def llama3_rope_factors(scaling, theta, head_dim):
    """The period multiplier of each of the head_dim / 2 frequencies, as mlx_lm's Llama3RoPE applies them: high
    frequencies are kept, low ones divided by `factor`, and those between blend smoothly. `scaling` is
    config.json's rope_scaling; a parameter it leaves out is Meta's (LLAMA3_ROPE)."""
    import numpy as np

    scaling = {**LLAMA3_ROPE, **scaling}
    wavelens = 2 * np.pi * theta ** (np.arange(0, head_dim, 2) / head_dim)
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    smooth = (context / wavelens - low) / (high - low)
    medium = 1 / ((1 - smooth) / scaling["factor"] + smooth)
    return np.where(wavelens < context / high, 1.0, np.where(wavelens > context / low, scaling["factor"], medium))
