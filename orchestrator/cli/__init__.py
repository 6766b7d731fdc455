"""The `memlaw` command line (top layer: may import every package below it).

main.py builds the parser and runs a command; the commands are grouped by what they do. Heavy
imports (torch, Ray) happen inside the commands that need them, so `memlaw --help` and the commands
that only read an experiment start fast and never import Ray.
"""
