"""What the CLI's API commands share: where to connect (`config.py`), requests and what their
failures mean (`http.py`, `errors.py`), how answers are printed (`output.py`), and the options
and error handling every command takes (`options.py`). It talks to the REST API only."""
