"""labsim-llm."""
