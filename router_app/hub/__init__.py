"""The cluster's control plane, inside the router process: node registry, command queue and events (one SQLite
store, WAL), the agent-facing endpoints, the admin API and the service layer both call. See router_app/README.md."""
