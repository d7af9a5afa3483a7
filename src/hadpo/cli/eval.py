"""`hadpo eval`: registered by the eval wing."""


def register(subparsers) -> None:
    """Filled in by the eval wing's issue; the verb is absent until then."""
