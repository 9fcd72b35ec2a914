"""The one error of a node's security setup: a key, token or certificate file it cannot use."""


class SecuritySetupError(Exception):
    """A security file (token, key, certificate) cannot be used; the message says which."""
