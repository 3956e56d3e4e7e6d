"""labsim-trtllm: the TensorRT-LLM serving engine model (``type: trtllm``)."""
