"""The `vaekit` command line."""
