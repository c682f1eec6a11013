"""The built-in model families, one module each (see ``components.core.families``)."""
