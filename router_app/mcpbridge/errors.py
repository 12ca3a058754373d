"""The bridge's one error type (its own module so services.py and cluster.py share it without a cycle)."""


class ServiceError(Exception):
    """An answer for the caller (bad argument, refused, missing piece). The tools turn it into a tool error."""
