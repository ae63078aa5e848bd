"""The preload libraries' way in: the environment formats of ``env`` and what
``run`` checks before it replaces itself with the command."""
