"""labsim-vllm."""
