"""Exceptions a user sees: each names the bad value and what is allowed."""


class AFGError(Exception):
    """Base class for errors caused by user input or an unusable output directory."""


class ConfigError(AFGError, ValueError):
    """A build configuration value is invalid."""


class OutputDirError(AFGError):
    """The output directory cannot be used for this build."""


class SourceError(AFGError):
    """Source data is missing, in the wrong layout, or unreadable."""


class ModelError(AFGError):
    """A target model or its checkpoint cannot be used with this source."""


class CorpusError(AFGError):
    """A corpus on disk does not match its manifest (corrupt, tampered or incomplete)."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none): what a one-line
    error quotes from a dependency's exception."""
    return (str(err).splitlines() or [type(err).__name__])[0]


class ImageError(AFGError, ValueError):
    """Stored image bytes that are not a picture this package reads (not a PNG, a bomb, a
    mode without a range, another size than the corpus's)."""
