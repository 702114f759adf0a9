"""MONAI bundles: templates, writer (any run -> bundle) and linter (``bundle check``)."""
