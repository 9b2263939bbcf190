"""The ``shallowcodec`` command line (app.py: the command table and :func:`main`)."""

from shallowcodec.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
