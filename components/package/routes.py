"""Which route of the service takes which data kind (light: the CLI's hints import it)."""

ENDPOINTS = {"image": "/predict", "tabular": "/predict_rows", "text": "/predict_text"}
