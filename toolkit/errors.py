"""The two ways a command fails: the user's input (exit 2) or a gate (exit 1)."""


class RtkError(Exception):
    """Bad input or an impossible request; the message is one line that says what to do. Exit 2."""

    exit_code = 2


class GateFailed(Exception):
    """A check ran and its result is outside the bound the user set. Exit 1."""

    exit_code = 1
