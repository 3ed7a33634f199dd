"""The self-contained HTML report of one or several run directories."""
