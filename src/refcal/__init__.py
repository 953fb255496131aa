"""refcal: refusal calibration drills for language models.

Data flows one way: bench → drill (variants) → target → judge → store → metrics → receipt/report.
"""

__version__ = "0.1.0"
