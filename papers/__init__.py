"""One subpackage per re-implemented paper; importing this package registers them all."""
from papers import bowman2016  # noqa: F401
