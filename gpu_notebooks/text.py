"""Words both apps write the same way."""


def count_of(n: int, noun: str) -> str:
    """3, 'epoch' → '3 epochs'; 1, 'size' → '1 size' (regular plurals only: an s)."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
