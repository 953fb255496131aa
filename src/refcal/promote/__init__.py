"""Promotion: gates (claims over receipts, read from a TOML file) and the evidence they are checked against; a
script, not a dashboard, decides PROMOTED or REJECTED."""
