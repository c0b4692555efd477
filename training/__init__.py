"""gan-train: the trainer (issue #3). Not built yet; nothing here is importable API."""
