"""labsim-cluster: multi-tenant GPU clusters — job traces and scheduling policies side by side."""
