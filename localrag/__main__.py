"""`python -m localrag` runs the CLI."""

from localrag.cli import main

main()
