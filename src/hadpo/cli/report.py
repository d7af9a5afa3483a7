"""`hadpo report`: registered by the report wing."""


def register(subparsers) -> None:
    """Filled in by the report wing's issue; the verb is absent until then."""
