"""Generative traffic: OpenAI-compatible and Open Inference Protocol generate calls, decoded off the hot path.

:mod:`.sse` parses relayed event streams incrementally, :mod:`.openai_api` and :mod:`.generate` reassemble
requests and answers into a :class:`.model.Generation`, :mod:`.timing` turns event arrival times into per-stream
statistics, :mod:`.metrics` holds the LLM serving metrics (docs/genai.md).
"""
