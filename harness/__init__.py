"""`make bench`: side-by-side measurements of the toolkit's cost (python -m harness.run).

    subject.py     which model and questions, the measure settings, timing/RSS helpers, tables
    throughput.py  toolkit sampling pass vs a per-sample reference loop vs the raw generate floor;
                   forward passes per decode step
    memory.py      peak memory of DPO+LoRA vs SFT+LoRA, each in a fresh subprocess (also its child entry)
    clustering.py  clustering cost per question for every clusterer; NLI pairs vs N^2
    run.py         the CLI: runs the parts asked for, prints tables, writes the JSON atomically
"""
