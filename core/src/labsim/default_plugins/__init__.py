"""The kernel's own components, registered exactly as third-party plugins register theirs."""
