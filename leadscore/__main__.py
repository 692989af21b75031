"""``python -m leadscore`` runs the command-line interface."""

from .cli import main

main()
