"""Explanations: why a model answered what it did (``attribution``), in the user's terms
(``views``), per model (``explainer``) and over a whole split (``summary``)."""
