"""The report and data-quality figures and tables."""
