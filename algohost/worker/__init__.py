"""Celery workers: build images, run calls in the sandbox, record outcomes.

Workers never hold an API key and never write a secret value to the store.
"""
