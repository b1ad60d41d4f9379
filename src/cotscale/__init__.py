"""cotscale: when does spending inference tokens beat training a bigger model?"""

import importlib.metadata

__version__ = "0.1.0"


def package_versions(names) -> dict[str, str]:
    """Installed versions of `names` (absent ones left out): what produced a result, and what a cache is valid for."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
