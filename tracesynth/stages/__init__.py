"""The pipeline stages, one package each, in the order a run goes through them.

    harvest   prompts → the teacher → samples.jsonl (online, batch, export/ingest, retry-truncated)
    verify    samples → verdicts.jsonl (math, code in a sandbox, choice, gym, judge, format)
    curate    verdicts → traces.jsonl (a list of steps, each dropping with a reason)
    export    traces → an HF dataset (Parquet) with its card and template.json
    train     the dataset → a student checkpoint (TRL's SFTTrainer)
    evaluate  the student → eval.json (pass@1 with intervals, thinking caps)
    report    the run folder → report.md, plots and the cost receipt

Each package's ``__init__`` exposes one function named after its stage. A stage imports the
foundation (records, config, rundir, errors) and the shared libraries (teacher, accounting,
decontam, sources), never another stage's internals; pipeline.py and cli/ sit on top.
"""
