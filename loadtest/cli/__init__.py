"""The ``loadtest`` command: entry point, commands, gate commands, shared click types."""
