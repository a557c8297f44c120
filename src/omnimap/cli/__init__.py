"""The command line: typer commands over the library, one module per command group.

Commands import the library inside their function bodies: torch and transformers
take seconds to load, which ``omnimap --help`` and a bad argument should not pay."""
