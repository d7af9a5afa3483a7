"""`hadpo train`: registered by the train wing."""


def register(subparsers) -> None:
    """Filled in by the train wing's issue; the verb is absent until then."""
