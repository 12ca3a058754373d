"""The `homelab-router` command (console script `router_app.cli:main`, and `python -m router_app`)."""
from .main import main

__all__ = ["main"]
