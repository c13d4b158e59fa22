"""Tool environments built on :mod:`arpo_env` (registered in ``arpo_env.registry.BUILTIN_ENVS``)."""
