"""One exception type for every problem a user can fix (bad data, bad config, bad file)."""


class FacemaskError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits with status 2."""


class ConfigError(FacemaskError):
    """An unknown option, a value of the wrong type or an unknown registry name."""


class DataError(FacemaskError):
    """A dataset that does not follow the competition layout, or an unreadable image."""
