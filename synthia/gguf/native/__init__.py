"""Native helpers built from llama.cpp sources on the user's machine (see template_engine)."""
