"""The errors a user can cause. Each carries a one-line message naming the file, key or value at fault."""

from jpegstudy.data.images import BadImageError
from jpegstudy.data.manifest import ManifestError
from jpegstudy.tasks.classification import ModelError

# ValueError covers bad qualities (jpeg.check_quality) and the others, which subclass it.
USER_ERRORS = (BadImageError, ManifestError, ModelError, ValueError, FileNotFoundError)
