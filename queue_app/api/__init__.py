"""The HTTP API (Django REST framework) under /api/: thin views over services and selectors."""
