"""The run-folder contract: where each file lives, how records are written and read, which rows are live.

* :mod:`.store` — append-only JSONL files, crash recovery, the lock, the manifest and stage marks
* :mod:`.live` — which sample rows are live (a re-asked sample supersedes the row it replaces)
"""
