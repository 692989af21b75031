"""``python -m leadscore`` runs the command-line interface."""

from .launch import main

main()
