"""The one exception type the package raises for bad input: its message names the problem
and the fix, in one line, so the CLI can print it as it is."""


class MicrogptError(ValueError):
    """Bad input to microgpt: a message a user can act on."""
