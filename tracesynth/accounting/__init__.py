"""Money and tokens: prices, the ledger and its cap, the spend recorded in a run folder, receipts, estimates.

* :mod:`.prices` — USD per million tokens (the shipped table, dated, with sources), the cost of a call
* :mod:`.ledger` — the run's ledger: reservations per attempt, possibly billed money, the cap
* :mod:`.spend` — the ONE reader of costs and tokens in a run folder (resume, receipt, card, report)
* :mod:`.tokens` — the token taxonomy and the characters-per-token estimate
* :mod:`.receipt` — what a finished run cost; :mod:`.estimate` — what a recipe will cost (``tracesynth cost``)

This package does arithmetic and reads run folders; it makes no requests and writes no records.
"""
