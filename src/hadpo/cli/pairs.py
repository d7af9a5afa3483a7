"""`hadpo pairs`: registered by the pairs wing."""


def register(subparsers) -> None:
    """Filled in by the pairs wing's issue; the verb is absent until then."""
