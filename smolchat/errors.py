"""Errors a person can act on.

Every exception raised for bad input or a broken environment derives from SmolChatError and
carries a message written for the user: what happened and what to do. The command line and
the window show that message as it is.
"""


class SmolChatError(Exception):
    """Base class: ``str(error)`` is the message to show."""
