"""The one exception type that the command line turns into a one-line message."""


class NlpRnnError(Exception):
    """A problem the user can fix: bad config, missing file, unreadable data, bad input."""
