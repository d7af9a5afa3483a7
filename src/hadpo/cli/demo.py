"""`hadpo demo`: registered by the demo wing."""


def register(subparsers) -> None:
    """Filled in by the demo wing's issue; the verb is absent until then."""
