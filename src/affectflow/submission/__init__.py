"""Submissions: the rows the organisers expect, validation, and the atomic writer."""
