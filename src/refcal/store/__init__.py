"""The run database (SQLite, WAL): one way to open it, and the run store that commits each attempt as it lands."""
