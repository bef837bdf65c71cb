"""llama.cpp's GGUF files: a GGUF as the base model, and the trained model as GGUF for LM Studio.

Start with exporter.py (MLX directory to GGUF) or importer.py (GGUF to MLX directory); verify.py checks an
exported file in llama.cpp against its MLX source; llama3_rope.py holds the RoPE factors both write and read;
native/ builds llama.cpp's own chat-template engine.
"""
