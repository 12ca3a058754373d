"""homelab-agent: the node side of the control plane. homelab_agent.py is stdlib-only and runs as a single file."""
