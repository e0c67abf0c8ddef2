"""One subpackage per re-implemented paper; importing this package registers them all.

Every subpackage is imported (and so registers itself with `repro.registry`), so adding a paper
means adding its folder only.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")
