"""Debug views of a run: the plan graph, the timeline of its steps, and ``raysight inspect``."""
