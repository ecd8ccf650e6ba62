"""`stackctl up`: what one run works with (`context`), the plan of steps it applies
(`steps.build_steps`), and the steps themselves, by platform and concern."""

from stackctl.setup.context import Context, UpOptions, resolve_context

__all__ = ["Context", "UpOptions", "resolve_context"]
