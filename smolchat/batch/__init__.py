"""Batch jobs: one prompt over a folder of pictures, answered by the local model or a server,
each answer appended whole to a results file that a restarted job continues. No Qt."""

from smolchat.batch.files import IMAGE_SUFFIXES, batch_files, content_hash
from smolchat.batch.job import Answerer, BatchJob, JobStopped, Progress, Summary
from smolchat.batch.results import ResultsFile

__all__ = [
    "IMAGE_SUFFIXES",
    "Answerer",
    "BatchJob",
    "JobStopped",
    "Progress",
    "ResultsFile",
    "Summary",
    "batch_files",
    "content_hash",
]
