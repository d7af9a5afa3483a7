"""`hadpo world`: build the synthetic scene world and pretrain its tiny base VLM."""


def register(subparsers) -> None:
    """Filled in with the world (foundation issue)."""
