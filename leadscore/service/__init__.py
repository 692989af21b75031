"""The live service: ``Service`` (facade.py) is its one entry point."""
