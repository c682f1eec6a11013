"""Which route of the service takes which data kind (light: the CLI's hints import it)."""

from components.core.kinds import KINDS

ENDPOINTS = {name: kind.route for name, kind in KINDS.items()}
