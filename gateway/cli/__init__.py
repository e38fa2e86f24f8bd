"""The `cunxiang` command line: one module per group of subcommands."""
