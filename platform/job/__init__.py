"""The job model: the job spec, the analysis pipeline planned from it, its run directory and
message templates."""
