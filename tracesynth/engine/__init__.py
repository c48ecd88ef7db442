"""The inference engine tracesynth starts itself: vLLM's OpenAI server on a checkpoint (:mod:`.vllm`).

Used by ``tracesynth serve`` (a checkpoint as a teacher or for your own tools) and by
``eval.backend: vllm`` (the student evaluated through the engine it will be deployed on). vLLM lives
in its own environment (``make vllm`` builds ``.venv-vllm``: it pins another transformers than the
project), so it is started as a process, never imported.
"""
