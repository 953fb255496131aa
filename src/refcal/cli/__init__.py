"""The `refcal` command line (entry point `refcal.cli.main:main`): one module per command group."""
