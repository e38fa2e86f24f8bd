"""`python -m gateway` runs the `cunxiang` command line."""

from gateway.cli.main import main

main()
