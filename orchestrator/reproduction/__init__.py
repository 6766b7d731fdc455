"""`memlaw reproduce`: run the sweeps the paper's figures need and write docs/reproduction.md.

run.py runs the sweeps (through orchestrator.tune) and collects their facts from storage; doc.py
holds the paper's own figures and renders the document; machine.py names the machine a figure was
measured on. May import every package below it except cli; Ray only through orchestrator.tune.
"""
