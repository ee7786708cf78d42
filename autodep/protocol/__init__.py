"""Wire protocols spoken besides /predict, without HTTP (the http package routes to them)."""
