"""Running raysight on a Ray cluster through the Jobs API: the runtime environment that
carries raysight there (:mod:`raysight.service.runtime_env`) and the client behind
``raysight submit|status|logs|cancel|list`` (:mod:`raysight.service.jobs_api`)."""
