"""The cache: exact and semantic answers as a view of the completions topic (see `service.py`)."""
