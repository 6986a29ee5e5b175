"""Artifacts: content-addressed blobs behind fsspec, their records, and garbage collection.

Models, job outputs and `data://` collections are all blobs here. The sandbox never
reaches this package; the worker does the storing on its behalf.
"""
