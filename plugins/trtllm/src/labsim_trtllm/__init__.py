"""labsim-trtllm: the TensorRT-LLM serving engine model (in progress; registers nothing yet)."""
