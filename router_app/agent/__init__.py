"""homelab-agent: the node side of the control plane. Stdlib-only: homelab_agent.py (the loop, the commands),
figures.py (the heartbeat's figures) and files.py (the read-only file commands), installed side by side."""
