"""The one layer that wires stages together: a drill session (plan → target → judge → store → receipt and
report), its runner and multi-turn conversations."""
