"""Screens pushed over the main one: a source in context, pickers, folders, indexing problems."""
