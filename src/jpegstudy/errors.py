"""The errors a user can cause. Each carries a one-line message naming the file, key or value at fault.

Kept free of torch imports, so that commands which do not need torch start fast.
"""

from jpegstudy.data.images import BadImageError
from jpegstudy.data.manifest import ManifestError


class ModelError(ValueError):
    """A model or checkpoint that cannot be used; the message is one line and says why."""


# ValueError also covers bad qualities (jpeg.check_quality) and config errors; the others subclass it.
USER_ERRORS = (BadImageError, ManifestError, ModelError, ValueError, FileNotFoundError)
