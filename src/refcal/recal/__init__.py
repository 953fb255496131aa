"""Recalibration: turning a corpus into new weights, which are then drilled again like any target.

Each recalibrator is a package here (`sft`: LoRA SFT with TRL, optionally after the hidden-state `contrastive`
stage; `direction`: refusal-direction edits searched with Optuna); each writes a receipt next to the weights it
saves (`receipt.TrainingReceipt`, `direction.receipt.DirectionReceipt`). `loop` runs the whole recalibration.
"""
