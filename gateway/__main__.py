"""`python -m gateway` runs the `cunxiang` command line."""

from gateway.cli import main

main()
