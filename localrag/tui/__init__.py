"""The Textual app: `localrag tui` and `python tui.py` start it (see `app.LocalragApp`)."""
