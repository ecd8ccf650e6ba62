"""stackctl: your own local LLM stack in one command, kept running."""

__version__ = "0.1.0"
