"""Recalibration: turning a corpus into new weights, which are then drilled again like any target.

Each recalibrator is a module here (`sft`: LoRA SFT with TRL, optionally after the hidden-state `contrastive`
stage); each writes a `receipt.TrainingReceipt` next to the weights it saves.
"""
