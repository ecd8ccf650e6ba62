"""Service units (rendering) and the service managers that run them (launchd, systemd).

from stackctl.services.inputs import inputs_for_host
from stackctl.services.render import render_units
from stackctl.stack import resolve_stack

stack = resolve_stack(config, config_path)
units = render_units(stack.config, inputs_for_host(stack))
report = stack.manager.install(units)   # InstallReport (stack.manager: services.managers)
stack.manager.status([])                # [ServiceState], every installed service
"""
