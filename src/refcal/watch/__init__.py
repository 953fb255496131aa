"""Watch: sweeps production logs for refusal drift, control limits, alerts and the drift ledger."""
