"""Speed on the machine at hand, kept apart so that the code a user changes reads without it.

blas.py gives MLX's CPU backend the system OpenBLAS; cpu_backend.py a blocked causal attention for the CPU;
fast_bpe.py tokenizes byte-level BPE with tiktoken; forked.py shares pure-Python work among the cores.
"""
