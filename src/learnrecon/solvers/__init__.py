"""Classical reconstruction methods, each a plain function ``solver(y, op, **params) -> x``."""

__all__: list[str] = []
