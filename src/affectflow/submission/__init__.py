"""Submissions: the rows the organisers expect, validation, and the atomic writer.

- :mod:`~affectflow.submission.expected`: the header, the rows to submit and the training fallback;
- :mod:`~affectflow.submission.validate`: checking a submission file;
- :mod:`~affectflow.submission.write`: writing one, holes filled, validated, atomically;
- :mod:`~affectflow.submission.task`: the pipeline's submission step from the run's files.
"""

from affectflow.submission.errors import SubmissionError
from affectflow.submission.expected import expected_keys, expected_rows, submission_header, training_fallback
from affectflow.submission.task import write_task_submission
from affectflow.submission.validate import validate_submission
from affectflow.submission.write import write_submission

__all__ = [
    "SubmissionError",
    "expected_keys",
    "expected_rows",
    "submission_header",
    "training_fallback",
    "validate_submission",
    "write_submission",
    "write_task_submission",
]
