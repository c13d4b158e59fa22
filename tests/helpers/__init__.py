"""Helpers the tests share (imported as ``tests.helpers.<module>``; none of them is collected as tests).

- ``env_checks``: Gymnasium's checker with its warnings turned into failures.
- ``tier_support``: which Python sandbox tiers a test may skip (none under CI).
- ``shared_data``: the team's shared data folder beside the repository (fails under CI when missing).
- ``arpo_test_doubles``: a character tokenizer and a scripted backend of controlled entropy.
- ``smoke_env``: registers ``test/DigitsCalculator-v0`` (imported by the trainer tests and subprocesses).
- ``vllm_support`` / ``vllm_rollout_probe``: finding the vLLM venv, and the script run under it.
"""
