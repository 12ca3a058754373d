"""homelab-router: deterministic OpenAI-compatible gateway."""
__version__ = "0.1.0"
